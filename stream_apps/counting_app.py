"""The Faust counting app: detections in, crossing events and tumbling-window counts out.

Agents are keyed by camera (the ``detections`` topic is keyed by camera id), so one camera's frames are
processed in order by one worker. The pure ``counting`` core does the work; this module only connects it to
streams and tables.

Restart and replay safety:
  * the whole per-camera counter (tracks, per-line sides, what was already counted, last frame seq) and its
    open windows' totals live in ONE value of the ``camera-state`` table, so a restarted or rebalanced worker
    resumes from a consistent snapshot exactly where the changelog says;
  * a frame's state is written to the table only after the broker acknowledged every output of that frame,
    so the changelog never runs ahead of the outputs: a worker killed in between leaves the table at the
    previous frame, and the redelivered frame is counted again and re-emits the same outputs;
  * frames at or below the stored last frame seq are replays and are ignored, so nothing counts twice;
  * a camera's end-of-stream marker (an END record after its last frame) ends every track at once, so crossings
    waiting for their line's minimum stay are counted and zones empty without waiting for the camera's return;
  * a camera silent for ``counting.silent_camera_end_s`` (its ingest killed, so no marker came) gets the marker
    from the counting app, on the camera's ``frames`` partition, behind whatever the camera sent: it comes back as
    an END record through the workers like the ingest's own, repeating the camera's last counted frame, so it ends
    nothing if any later frame of the camera was queued before it (frames waiting for a worker included);
  * Faust flushes the producer (changelogs included) before it commits source offsets, so nothing is lost;
  * crossing ids are deterministic and window counts are re-emitted as absolute values, so sinks are idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import faust
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest
from redis.exceptions import RedisError

from counting.config import CameraConfigs, load_camera_configs
from counting.engine import CameraCounter, CameraStateError
from counting.lines import LineStateError
from counting.tracker import TrackerStateError
from counting.windows import CrossingWindows, Labels, ZoneMinutes
from counting.zones import ZoneStateError
from foundation.kafka import base_config
from foundation.resilience import BreakerMetrics, CircuitOpen, circuit_breaker
from foundation.settings import Settings
from models.calibration import BoxCalibration
from schemas import CROSSING, DETECTIONS, FRAME, WINDOW_COUNT, ZONE_OCCUPANCY, SchemaError, headers_dict
from schemas.dead_letters import dead_letter_headers
from schemas.frames import END_REASON_HEADER, SILENCE, end_of_stream_marker, frame_headers
from sinks.redis_live import AsyncLiveState
from stream_apps.faust_kafka import CountingFaustApp, faust_broker_options
from stream_apps.records import (
    Provenance,
    calibration_from_record,
    check_detections_record,
    crossing_event_id,
    detections_from_record,
)

log = logging.getLogger(__name__)

STATE_ERRORS = (CameraStateError, TrackerStateError, LineStateError, ZoneStateError)

# What a camera's end-of-stream marker repeats of its last counted record; source_partition: its frames partition.
_LAST_FRAME_FIELDS = ("frame_seq", "capture_ts_ms", "width", "height", "status", "variant", "experiment",
                      "source_partition")


@dataclass(frozen=True)
class CountedFrame:
    provenance: Provenance
    zones: dict[str, dict[str, int]]
    crossings: list[dict[str, Any]]
    windows: list[dict[str, Any]]
    zone_minutes: list[dict[str, Any]]
    stream_ended: bool = False
    """Counted from the end-of-stream marker of the camera's ingest, not from a frame."""
    silence_ended: bool = False
    """Counted from the marker the counting app sent for the camera's silence (``silent_camera_ends``)."""


class StateTable(Protocol):
    def get(self, key: str) -> Any: ...

    def items(self) -> Iterable[tuple[str, Any]]: ...

    def __setitem__(self, key: str, value: Any) -> None: ...


@dataclass
class CameraState:
    counter: CameraCounter
    windows: CrossingWindows
    zone_minutes: ZoneMinutes
    last_frame: dict[str, Any] | None = None
    """``_LAST_FRAME_FIELDS`` of the record that moved the counter to its last frame; None before any."""
    counted_at_ms: int | None = None
    """Wall clock (epoch ms) when that record was counted."""

    def to_state(self) -> dict[str, Any]:
        return {"counter": self.counter.to_state(), "windows": self.windows.to_state(),
                "zone_minutes": self.zone_minutes.to_state(), "last_frame": self.last_frame,
                "counted_at_ms": self.counted_at_ms}


Publish = Callable[[CountedFrame], Awaitable[None]]
# (model name, model version) -> that version's box calibration, None when it has none.
Calibrations = Callable[[str, str], BoxCalibration | None]


def registry_calibrations(settings: Settings) -> Calibrations:
    """Box calibrations read from the model registry's manifests, once per model version, for records that carry
    none (written before detections v3). A version that cannot be read counts with its boxes as they are, and says
    so once in the log."""
    from models.loading import open_model_registry

    registry = open_model_registry(settings)
    known: dict[tuple[str, str], BoxCalibration | None] = {}

    def calibration(name: str, version: str) -> BoxCalibration | None:
        if (name, version) not in known:
            try:
                known[name, version] = registry.resolve(f"{name}@{version}").manifest.box_calibration
            except Exception as exc:  # any registry failure: count uncalibrated rather than stop
                log.warning("no box calibration for %s@%s (%s): its boxes are counted as they are", name, version,
                            exc)
                known[name, version] = None
        return known[name, version]

    return calibration


class CountingService:
    """Runs one CameraCounter per camera against state kept in a Faust table (any mapping works).

    Invariant: the table holds, per camera, the state after the last frame whose outputs were published; the
    cache holds the same state, or a state ahead of it after a failed publish (then it is rebuilt from the table).
    """

    def __init__(self, cameras: CameraConfigs, window_seconds: int, camera_state: StateTable,
                 open_windows: int = 10, calibrations: Calibrations | None = None) -> None:
        self.cameras = cameras
        self.calibrations = calibrations
        self.window_seconds = window_seconds
        self.camera_state = camera_state
        self.open_windows = open_windows
        self._cached: dict[str, CameraState] = {}
        self._ends_sent: dict[str, tuple[int, int]] = {}  # camera -> (frame seq, epoch ms) of its last silence END

    def _restore(self, camera_id: str, class_names: list[str]) -> CameraState:
        """The camera's state for a record of a model with ``class_names``, rebuilt from the table unless the
        cache is at the table's position and counts with the same class list."""
        stored = self.camera_state.get(camera_id)
        cached = self._cached.get(camera_id)
        if (cached is not None and stored is not None and cached.counter.last_seq == stored["counter"]["last_seq"]
                and cached.counter.class_names == class_names):
            return cached
        config = self.cameras.for_camera(camera_id)
        restored = CameraState(CameraCounter(config, class_names),
                               CrossingWindows(self.window_seconds, self.open_windows), ZoneMinutes())
        if stored is not None:
            try:
                restored = CameraState(CameraCounter.from_state(stored["counter"], config, class_names),
                                       CrossingWindows(self.window_seconds, self.open_windows, stored["windows"]),
                                       ZoneMinutes(state=stored.get("zone_minutes")), stored.get("last_frame"),
                                       stored.get("counted_at_ms"))
                log.info("camera %s: resumed counting after frame %s", camera_id, restored.counter.last_seq)
            except STATE_ERRORS as exc:
                log.warning("camera %s: stored state is from an incompatible version (%s); counting starts afresh",
                            camera_id, exc)
        self._cached[camera_id] = restored
        return restored

    async def handle(self, record: dict[str, Any], publish: Publish, silence: bool = False) -> CountedFrame | None:
        """Count one detections record, ``await publish(counted)``, then store the camera's new state.

        Returns None for a skipped frame or a replayed (already counted) one; nothing is published for those.
        An END record (the camera's end-of-stream marker, or with ``silence`` the one ``silent_camera_ends`` made)
        publishes what ending every track counts.
        The state is stored only after ``publish`` returned: if it raises, the table keeps the previous frame's
        state and the exception propagates, so a redelivery of this frame counts it again.
        """
        p = Provenance.of(record)
        state = self._restore(p.camera_id, list(record["class_names"]))
        ended = record["status"] == "END"
        if ended:  # the camera's source ended after this frame: every track ends
            result = state.counter.end(p.frame_seq, p.capture_ts_ms)
        elif record["status"] != "OK":  # SKIPPED or ERROR: a gap the tracker bridges
            state.counter.skip(p.frame_seq)
            result = None
        else:
            calibration = calibration_from_record(record)
            if calibration is None and self.calibrations is not None:  # a record from before v3, or no calibration
                calibration = self.calibrations(p.model_name, p.model_version)
            result = state.counter.update(p.frame_seq, p.capture_ts_ms, detections_from_record(record),
                                          calibration, (int(record["width"]), int(record["height"])))
        counted = None
        now_ms = int(time.time() * 1000)
        if result is not None:
            labels = Labels(p.camera_id, p.model_name, p.model_version, p.variant, p.experiment)
            crossings = [{
                "event_id": crossing_event_id(p, c.line, c.direction, c.track_id, c.frame_seq),
                "camera_id": p.camera_id, "frame_seq": c.frame_seq, "capture_ts_ms": c.capture_ts_ms,
                "line": c.line, "direction": c.direction, "track_id": c.track_id, "class_name": c.class_name,
                "model_name": p.model_name, "model_version": p.model_version,
                "variant": p.variant, "experiment": p.experiment,
            } for c in result.crossings]
            windows = state.windows.add(p.frame_seq, p.capture_ts_ms, result.crossings, labels, now_ms)
            if ended:
                zone_rows = state.zone_minutes.end(result.zone_events, labels, now_ms)
            else:
                zone_rows = state.zone_minutes.update(p.frame_seq, p.capture_ts_ms, result.zones, result.zone_events,
                                                      labels, now_ms)
            state.windows.close_old(p.capture_ts_ms)
            counted = CountedFrame(p, result.zones, crossings, windows, zone_rows, ended and not silence,
                                   ended and silence)
            await publish(counted)
        if state.counter.last_seq == p.frame_seq:  # not a late record: an END must repeat this one to end anything
            state.last_frame = {field: record[field] for field in _LAST_FRAME_FIELDS}
            state.counted_at_ms = now_ms
        self.camera_state[p.camera_id] = state.to_state()
        return counted

    def silent_camera_ends(self, now_ms: int, silent_ms: int) -> list[tuple[int, dict[str, Any]]]:
        """(frames partition, end-of-stream marker) for each camera of the table whose last counted record, no END
        itself, was counted more than ``silent_ms`` before ``now_ms``; one per camera, frame and ``silent_ms`` at
        most (``end_sent``).

        The marker is a ``frames`` record, as the ingest's own, repeating the camera's last counted frame (seq,
        capture time, size, variant, experiment); the partition is the one that frame came from. Queued there
        behind everything the camera sent, it ends the tracks only if nothing came after that frame: a later frame
        (still waiting for a worker, or counted meanwhile) makes it late, and counting ignores it. A standby
        replica of the table may send one too; the second END at a frame ends nothing more."""
        ends = []
        for camera_id, stored in list(self.camera_state.items()):
            last, counted_at = stored.get("last_frame"), stored.get("counted_at_ms")
            if last is None or counted_at is None or last["status"] == "END" or now_ms - counted_at <= silent_ms:
                continue
            if last["source_partition"] < 0:  # not from a frames record: no partition to queue it behind
                continue
            sent = self._ends_sent.get(camera_id)
            if sent is not None and sent[0] == last["frame_seq"] and now_ms - sent[1] <= silent_ms:
                continue
            ends.append((last["source_partition"], end_of_stream_marker({**last, "camera_id": camera_id})))
        return ends

    def end_sent(self, marker: dict[str, Any], now_ms: int) -> None:
        """``marker`` (from ``silent_camera_ends``) was delivered: none again for the same frame for a while."""
        self._ends_sent[marker["camera_id"]] = (marker["frame_seq"], now_ms)


class CountingMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.frames = Counter("camcount_count_frames", "Frames counted (detections records other than end markers)",
                              ("camera",), registry=self.registry)
        self.late_frames = Counter("camcount_count_late_frames", "Replayed or out-of-order frames ignored",
                                   ("camera",), registry=self.registry)
        self.stream_ended = Gauge("camcount_count_stream_ended",
                                  "1 once the camera's end-of-stream marker was counted (its ingest stopped), 0 while "
                                  "frames come", ("camera",), registry=self.registry)
        self.silence_ends = Counter("camcount_count_silence_ends",
                                    "End-of-stream markers the counting app sent for a camera silent longer than "
                                    "counting.silent_camera_end_s (its ingest died without one)", ("camera",),
                                    registry=self.registry)
        self.dead_records = Counter("camcount_count_dead_records", "Detections records set aside, undecodable",
                                    ("code", "detail"), registry=self.registry)
        self.crossings = Counter("camcount_crossings", "Line crossings counted",
                                 ("camera", "line", "direction", "class"), registry=self.registry)


def build_app(settings: Settings, registry: CollectorRegistry | None = None,
              breakers: BreakerMetrics | None = None) -> faust.App:
    """The counting app; its /metrics serves ``registry`` (shared with an in-process sink), where ``breakers``
    (created there when not given) reports its circuit breakers."""
    kafka = settings.kafka
    datadir = settings.layout().faust_data(settings.counting.app_id)
    datadir.mkdir(parents=True, exist_ok=True)
    app = CountingFaustApp(
        settings.counting.app_id,
        **faust_broker_options(base_config(settings)),
        store="memory://",
        topic_partitions=kafka.partitions,
        broker_session_timeout=kafka.session_timeout_ms / 1000,
        broker_heartbeat_interval=max(kafka.session_timeout_ms / 6000, 0.5),
        # Tansu's ListOffsets quirk loses changelog data on recovery unless every record is its own batch.
        producer_max_batch_size=1,
        consumer_auto_offset_reset="earliest",
        web_enabled=True,
        web_port=settings.counting.web_port,
        autodiscover=False,
        datadir=str(datadir),
    )
    cameras = load_camera_configs(settings.counting.cameras)
    detections = app.topic(kafka.detections_topic, key_serializer="raw", value_serializer="raw")
    crossings_topic = app.topic(kafka.crossings_topic, key_serializer="raw", value_serializer="raw")
    window_counts_topic = app.topic(kafka.window_counts_topic, key_serializer="raw", value_serializer="raw")
    zone_topic = app.topic(kafka.zone_occupancy_topic, key_serializer="raw", value_serializer="raw")
    camera_state = app.Table("camera-state", default=None, key_type=str)  # JSON keys and values
    live = AsyncLiveState(settings.redis_url(), settings.redis.key_prefix)
    metrics = CountingMetrics(registry)
    redis_breaker = circuit_breaker("redis-live-state", settings.resilience,
                                    breakers or BreakerMetrics(metrics.registry))
    dead_records = app.topic(kafka.records_dead_letter_topic, key_serializer="raw", value_serializer="raw")
    frames = app.topic(kafka.frames_topic, key_serializer="raw", value_serializer="raw")  # silence markers only

    @app.page("/metrics")
    async def metrics_page(web, request):
        return web.bytes(generate_latest(metrics.registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/healthz")
    async def healthz(web, request):
        return web.text("ok\n")

    @app.page("/readyz")
    async def readyz(web, request):
        ready = bool(app.consumer.assignment()) if app.consumer is not None else False
        return web.text("ready\n" if ready else "not ready\n", status=200 if ready else 503)

    service = CountingService(cameras, settings.counting.window_seconds, camera_state,
                              calibrations=registry_calibrations(settings))

    async def publish(counted: CountedFrame) -> None:
        """Send every output of the frame, then wait until the broker acknowledged all of them.

        ``Topic.send`` only queues the record in the producer and returns a future of its RecordMetadata
        (``stream_publish_on_commit`` is off); a failed delivery raises here, so the frame's state is not stored.
        """
        key = counted.provenance.camera_id.encode()
        outputs = ([(crossings_topic, CROSSING, row) for row in counted.crossings]
                   + [(window_counts_topic, WINDOW_COUNT, row) for row in counted.windows]
                   + [(zone_topic, ZONE_OCCUPANCY, row) for row in counted.zone_minutes])
        deliveries = [await topic.send(key=key, value=codec.encode(row), headers=codec.headers())
                      for topic, codec, row in outputs]
        await asyncio.gather(*deliveries)

    @app.agent(detections)
    async def count(stream: faust.Stream) -> None:
        async for event in stream.events():
            headers = event.headers
            header_map = headers_dict(list(headers.items()) if isinstance(headers, dict) else headers)
            try:
                record = DETECTIONS.decode(event.value, header_map)
                check_detections_record(record)
            except SchemaError as exc:  # set aside, never skipped silently; acknowledged before the offset commits
                message = event.message
                log.warning("setting aside %s/%s/%s on %s: %s", message.topic, message.partition, message.offset,
                            kafka.records_dead_letter_topic, exc)
                headers = dead_letter_headers(list(header_map.items()), "count", exc.code, exc.detail, str(exc),
                                              message.topic, message.partition, message.offset)
                delivery = await dead_records.send(key=event.key, value=event.value, headers=headers)
                await delivery
                metrics.dead_records.labels(exc.code, exc.detail).inc()
                continue
            camera = record["camera_id"]
            silence = header_map.get(END_REASON_HEADER) == SILENCE
            counted = await service.handle(record, publish, silence)
            if record["status"] != "END":  # an end marker is no frame
                metrics.frames.labels(camera).inc()
                metrics.stream_ended.labels(camera).set(0)
            elif counted is not None and not silence:  # not a replayed end, nor one for silence
                metrics.stream_ended.labels(camera).set(1)
            if counted is None:
                if record["status"] == "OK":
                    metrics.late_frames.labels(camera).inc()
                continue
            for crossing in counted.crossings:
                metrics.crossings.labels(camera, crossing["line"], crossing["direction"], crossing["class_name"]).inc()
            p = counted.provenance
            try:  # live state is a convenience: counting goes on without it, and the next frame overwrites it
                with redis_breaker.calling():  # open: skipped at once instead of waiting out Redis' timeout per frame
                    await live.frame_counted(p.camera_id, p.frame_seq, p.capture_ts_ms, counted.zones,
                                             counted.stream_ended, counted.silence_ended)
            except CircuitOpen:
                pass
            except RedisError as exc:
                log.warning("Redis live state not updated: %s", exc)

    silent_s = settings.counting.silent_camera_end_s
    if silent_s:
        @app.timer(interval=min(silent_s / 4, 15.0))
        async def end_silent_cameras() -> None:
            """Send an END for each camera silent for ``silent_s``; a failed send is tried again on the next tick."""
            now_ms = int(time.time() * 1000)
            try:
                ends = service.silent_camera_ends(now_ms, int(silent_s * 1000))
            except Exception:  # a table read mid-rebalance: a background check must never stop counting
                log.exception("silent cameras not checked; trying again on the next tick")
                return
            for partition, marker in ends:
                camera = marker["camera_id"]
                log.info("camera %s: nothing counted for over %.0f s after frame %d; sending its end-of-stream marker",
                         camera, silent_s, marker["frame_seq"])
                try:
                    delivery = await frames.send(key=camera.encode(), value=FRAME.encode(marker), partition=partition,
                                                 headers=[*frame_headers(marker), (END_REASON_HEADER, SILENCE)])
                    await delivery
                except Exception as exc:  # the broker is away: the next tick tries again
                    log.warning("camera %s: end-of-stream marker not sent: %s", camera, exc)
                    continue
                service.end_sent(marker, now_ms)
                metrics.silence_ends.labels(camera).inc()

    return app


def run_worker(settings: Settings, registry: CollectorRegistry | None = None,
               breakers: BreakerMetrics | None = None) -> None:
    """Runs the Faust worker until it is stopped (SIGINT/SIGTERM); returns after a clean stop."""
    app = build_app(settings, registry, breakers)
    worker = faust.Worker(app, loglevel=settings.log_level.lower())
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:  # Faust exits the process itself; let the caller choose the exit code
        if exc.code not in (0, None):
            raise
