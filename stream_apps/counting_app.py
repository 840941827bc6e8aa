"""The Faust counting app: detections in, crossing events and tumbling-window counts out.

Agents are keyed by camera (the ``detections`` topic is keyed by camera id), so one camera's frames are
processed in order by one worker. The pure ``counting`` core does the work; this module only connects it to
streams and tables.

Restart and replay safety:
  * the whole per-camera counter (tracks, per-line sides, what was already counted, last frame seq) lives in
    the ``camera-state`` table, so a restarted or rebalanced worker resumes exactly where the changelog says;
  * frames at or below the stored last frame seq are replays and are ignored, so nothing counts twice;
  * Faust flushes the producer (outputs and changelogs) before it commits source offsets, so nothing is lost;
  * crossing ids are deterministic and window counts are re-emitted as absolute values, so sinks are idempotent.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import faust
from redis.exceptions import RedisError

from camcount.settings import Settings
from counting.config import CameraConfigs, load_camera_configs
from counting.engine import CameraCounter
from sinks.redis_live import AsyncLiveState
from schemas import CROSSING, DETECTIONS, WINDOW_COUNT, SchemaError, headers_dict
from stream_apps.records import Provenance, crossing_event_id, detections_from_record, window_start_ms

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CountedFrame:
    provenance: Provenance
    zones: dict[str, dict[str, int]]
    crossings: list[dict[str, Any]]
    windows: list[dict[str, Any]]


class CountingService:
    """Runs one CameraCounter per camera against state kept in Faust tables."""

    def __init__(self, cameras: CameraConfigs, window_seconds: int, camera_state, window_totals) -> None:
        self.cameras = cameras
        self.window_seconds = window_seconds
        self.camera_state = camera_state
        self.window_totals = window_totals
        self._counters: dict[str, CameraCounter] = {}

    def counter_for(self, camera_id: str, class_names: list[str]) -> CameraCounter:
        """The camera's counter, rebuilt from the table whenever the table holds a different position."""
        stored = self.camera_state.get(camera_id)
        cached = self._counters.get(camera_id)
        if cached is not None and stored is not None and cached.last_seq == stored.get("last_seq"):
            return cached
        config = self.cameras.for_camera(camera_id)
        if stored is None:
            counter = CameraCounter(config, class_names)
        else:
            counter = CameraCounter.from_state(stored, config, class_names)
            log.info("camera %s: resumed counting after frame %s", camera_id, counter.last_seq)
        self._counters[camera_id] = counter
        return counter

    def handle(self, record: dict[str, Any]) -> CountedFrame | None:
        """Count one detections record; None for a skipped frame or a replayed (already counted) one."""
        p = Provenance.of(record)
        counter = self.counter_for(p.camera_id, list(record["class_names"]))
        if record["status"] == "SKIPPED":
            counter.skip(p.frame_seq)
            result = None
        else:
            result = counter.update(p.frame_seq, p.capture_ts_ms, detections_from_record(record))
        self.camera_state[p.camera_id] = counter.to_state()
        if result is None:
            return None
        crossings: list[dict[str, Any]] = []
        changed: dict[str, dict[str, Any]] = {}
        now_ms = int(time.time() * 1000)
        for c in result.crossings:
            crossings.append({
                "event_id": crossing_event_id(p, c.line, c.direction, c.track_id, c.frame_seq),
                "camera_id": p.camera_id, "frame_seq": c.frame_seq, "capture_ts_ms": c.capture_ts_ms,
                "line": c.line, "direction": c.direction, "track_id": c.track_id, "class_name": c.class_name,
                "model_name": p.model_name, "model_version": p.model_version,
                "variant": p.variant, "experiment": p.experiment,
            })
            start = window_start_ms(c.capture_ts_ms, self.window_seconds)
            key = "|".join(map(str, (p.camera_id, start, c.line, c.class_name, c.direction, p.variant,
                                     p.experiment, p.model_name, p.model_version)))
            self.window_totals[key] += 1
            changed[key] = {
                "camera_id": p.camera_id, "window_start_ms": start, "window_seconds": self.window_seconds,
                "line": c.line, "class_name": c.class_name, "direction": c.direction,
                "variant": p.variant, "experiment": p.experiment,
                "model_name": p.model_name, "model_version": p.model_version,
                "count": self.window_totals[key], "updated_ms": now_ms,
            }
        return CountedFrame(p, result.zones, crossings, list(changed.values()))


def build_app(settings: Settings) -> faust.App:
    kafka = settings.kafka
    app = faust.App(
        settings.counting.app_id,
        broker=";".join(f"kafka://{host}" for host in settings.kafka_bootstrap().split(",")),
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
    )
    cameras = load_camera_configs(settings.counting.cameras)
    detections = app.topic(kafka.detections_topic, key_serializer="raw", value_serializer="raw")
    crossings_topic = app.topic(kafka.crossings_topic, key_serializer="raw", value_serializer="raw")
    window_counts_topic = app.topic(kafka.window_counts_topic, key_serializer="raw", value_serializer="raw")
    camera_state = app.Table("camera-state", default=None)  # app defaults: raw keys, JSON values
    window_totals = app.Table("window-totals", default=int)
    live = AsyncLiveState(settings.redis_url())
    service = CountingService(cameras, settings.counting.window_seconds, _StrKeys(camera_state),
                              _StrKeys(window_totals))

    @app.agent(detections)
    async def count(stream: faust.Stream) -> None:
        async for event in stream.events():
            headers = event.headers
            header_map = headers_dict(list(headers.items()) if isinstance(headers, dict) else headers)
            try:
                record = DETECTIONS.decode(event.value, header_map)
            except SchemaError as exc:
                log.error("skipping detections message %s/%s: %s", event.message.partition,
                          event.message.offset, exc)
                continue
            counted = service.handle(record)
            if counted is None:
                continue
            key = record["camera_id"].encode()
            for crossing in counted.crossings:
                await crossings_topic.send(key=key, value=CROSSING.encode(crossing), headers=CROSSING.headers())
            for window in counted.windows:
                await window_counts_topic.send(key=key, value=WINDOW_COUNT.encode(window),
                                               headers=WINDOW_COUNT.headers())
            p = counted.provenance
            try:
                await live.frame_counted(p.camera_id, p.frame_seq, p.capture_ts_ms, counted.zones)
            except RedisError as exc:  # live state is a convenience; counting goes on without it
                log.warning("Redis live state not updated: %s", exc)

    return app


class _StrKeys:
    """Faust tables with raw keys want bytes; the service speaks str."""

    def __init__(self, table) -> None:
        self._table = table

    def get(self, key: str):
        return self._table.get(key.encode())

    def __getitem__(self, key: str):
        return self._table[key.encode()]

    def __setitem__(self, key: str, value) -> None:
        self._table[key.encode()] = value


def run_worker(settings: Settings) -> None:
    app = build_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level.lower())
    worker.execute_from_commandline()
