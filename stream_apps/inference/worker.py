"""The inference worker: one member of the ``frames`` consumer group.

Batching policy: a frame is never held back to fill a batch; a batch is what arrived while the model ran the batch
before it. With no batch waiting, the worker blocks for one frame (up to ``inference.max_delay_ms``, after which it
comes round to commit acknowledged offsets, pick up a new production model and check for stop), then adds what else
has already arrived, up to ``max_batch``, without waiting, and starts decoding them: that is the waiting batch. With
a batch waiting, it takes what has arrived since, without waiting, starts decoding it, and completes the waiting
batch at once. At low load batches stay at 1-2 frames and a frame's latency approaches its own decode + inference;
under load frames pile up in librdkafka's queue while the model runs, so batches grow to ``max_batch`` by themselves
and throughput is kept. Each detections record carries a timing header (``metrics.TIMING_HEADER``: fetched,
decoded, inference start and end, produced) so a reader can see where its latency went.

Commit protocol, per batch of frames taken from the partitions this worker owns:
  1. decode and validate every frame on the decode pool (started as soon as the batch is fetched, so it
     overlaps the previous batch's inference); bad frames go to the dead-letter topic, stale ones become
     SKIPPED markers, and a camera's end-of-stream marker an END record;
  2. run each variant's frames through its model as one batch;
  3. produce one detections record per frame, keyed by camera id, in input order;
  4. hand the batch to the AckedCommitter, which commits the offsets just past it as soon as the broker has
     acknowledged every record of it (without holding up the next batch); with transactions, instead commit
     the transaction that also carries the offsets.
Invariant: an offset is committed only after every record derived from the frames before it is durable, so a
crashed worker loses no frame; what it did not commit is redone by the next owner (at-least-once), and with
transactions enabled, redone records replace aborted ones (exactly-once for read_committed readers).
Batches complete in fetch order, one at a time, so each partition's output keeps its input order. At most one
fetched batch waits while another completes, and librdkafka's prefetch is bounded, so memory stays bounded
however slow the model is. On revoke, the waiting batch is completed and committed before the partitions go; on
loss (session timeout), it and every offset not yet committed for the lost partitions are dropped, since the
partitions may already be someone else's. On stop (checked between batches, so within ``max_delay_ms`` when idle),
the waiting batch is completed and the committer drained before the worker closes; a stop that finds the producer
queue full raises StoppedWhileQueueFull and leaves the batch being produced uncommitted, to be redone.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from foundation.errors import CamcountError
from foundation.kafka import consumer_config, next_offsets, producer_config, wait_for_broker
from foundation.settings import Settings
from models.agreement import match_detections
from models.detections import Detections
from models.detector import Detector
from schemas import DETECTIONS, SHADOW_PAIR, headers_dict
from schemas.dead_letters import dead_letter_headers
from schemas.frames import END_REASON_HEADER
from stream_apps.inference.commits import AckedCommitter, PendingBatch
from stream_apps.inference.frames import BadFrame, DecodedFrame, FrameLimits, decode_frame
from stream_apps.inference.metrics import InferenceMetrics, timing_header
from stream_apps.inference.routing import Route, RouteTable
from stream_apps.records import calibration_to_record

log = logging.getLogger(__name__)

LAG_REFRESH_S = 5.0


class StoppedWhileQueueFull(CamcountError):
    """The worker gave up waiting for room in the producer queue because it was asked to stop. Nothing is lost:
    the batch it was producing is never committed, so the group redoes it."""

    code = "WORKER_001"
    detail = "stopped-while-queue-full"


@dataclass
class WorkerStats:
    frames_ok: int = 0
    frames_skipped: int = 0
    dead_letters: int = 0
    batches: int = 0


@dataclass
class FetchedBatch:
    """Frames fetched to run together: each one's message, its decoding (a future of the decoded frame or BadFrame
    and the wall-clock time decoding ended) and its fetch time (wall clock, s)."""

    messages: list[Message] = field(default_factory=list)
    decoded: list[Future] = field(default_factory=list)
    fetched: list[float] = field(default_factory=list)

    def extend(self, more: FetchedBatch) -> None:
        self.messages += more.messages
        self.decoded += more.decoded
        self.fetched += more.fetched


class InferenceWorker:
    def __init__(self, settings: Settings, routes: RouteTable, metrics: InferenceMetrics | None = None) -> None:
        self.settings = settings
        self.routes = routes
        self.metrics = metrics or InferenceMetrics()
        self.stats = WorkerStats()
        inference = settings.inference
        self.limits = FrameLimits(inference.max_frame_bytes, inference.max_frame_pixels, inference.max_frame_age_ms)
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(inference.decode_threads, thread_name_prefix="decode")
        self._committer: AckedCommitter | None = None
        self._batch: PendingBatch | None = None
        self._waiting: FetchedBatch | None = None
        self._assigned: set[tuple[str, int]] = set()
        self._lag_refreshed = 0.0
        self._lag_labels: set[tuple[str, str]] = set()
        self.ready = threading.Event()
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None

    def stop(self, *_: object) -> None:
        self._stop.set()

    # --- set-up and rebalances ----------------------------------------------------------------------------
    def _connect(self) -> None:
        s = self.settings
        wait_for_broker(s.kafka_bootstrap(), timeout_s=15, client_config=s.kafka.client_config)
        overrides: dict[str, object] = {"queued.max.messages.kbytes": s.inference.prefetch_kbytes}
        if s.inference.group_instance_id:
            overrides["group.instance.id"] = s.inference.group_instance_id
        self._consumer = Consumer(consumer_config(s, s.inference.group_id, **overrides))
        producer_overrides = {}
        if s.inference.transactional:
            member = s.inference.group_instance_id or uuid.uuid4().hex[:12]
            producer_overrides["transactional.id"] = f"{s.inference.group_id}-{member}"
        self._producer = Producer(producer_config(s, **producer_overrides))
        if s.inference.transactional:
            self._producer.init_transactions(30)
        self._committer = AckedCommitter(self._consumer, self._producer)
        self._consumer.subscribe([s.kafka.frames_topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                 on_lost=self._on_lost)

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned |= {(p.topic, p.partition) for p in partitions}
        log.info("assigned partitions %s; now own %s", sorted(p.partition for p in partitions),
                 sorted(p for _, p in self._assigned))
        self.ready.set()

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._waiting is not None:  # finish and commit it while we still own its partitions
            batch, self._waiting = self._waiting, None
            self._complete(batch)
        if self._committer is not None:
            self._committer.drain()
        self._forget(partitions)
        log.info("revoked partitions %s", sorted(p.partition for p in partitions))

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # The group moved on without us: the waiting batch and the offsets not yet committed may now be someone
        # else's, so drop them uncommitted.
        self._waiting = None
        if self._committer is not None:
            self._committer.discard(partitions)
        self._forget(partitions)
        log.warning("lost partitions %s (session timed out); their uncommitted frames will be redone elsewhere",
                    sorted(p.partition for p in partitions))

    def _forget(self, partitions: list[TopicPartition]) -> None:
        """Partitions no longer ours: stop tracking them, and remove their lag gauges (another member reports)."""
        self._assigned -= {(p.topic, p.partition) for p in partitions}
        for p in partitions:
            labels = (p.topic, str(p.partition))
            if labels in self._lag_labels:
                self.metrics.lag.remove(*labels)
                self._lag_labels.discard(labels)

    # --- main loop ----------------------------------------------------------------------------------------
    def run(self) -> WorkerStats:
        self._connect()
        assert self._consumer is not None and self._producer is not None
        poll_s = max(self.settings.inference.max_delay_ms / 1000.0, 0.005)
        try:
            while not self._stop.is_set():
                self.routes.refresh()  # hot swap happens here, between batches
                if self._waiting is None:
                    self._fetch_first(poll_s)
                else:
                    self._fetch_next_and_complete()
                self._committer.commit_acknowledged()
                self._refresh_lag()
            if self._waiting is not None:
                batch, self._waiting = self._waiting, None
                self._complete(batch)
            self._committer.drain()
        finally:
            self._pool.shutdown(wait=True)
            self._consumer.close()
            self._producer.flush(10)
        return self.stats

    def _fetch_first(self, poll_s: float) -> None:
        """Nothing waits: block up to ``poll_s`` for one frame, then add what else has already arrived, without
        waiting, and start decoding them as the waiting batch."""
        first = self._consume(1, poll_s)
        if not first:
            return
        # Waiting before the second consume: a revoke during it completes and commits this frame, as it would any
        # waiting batch, while the partition is still ours.
        self._waiting = self._start_decoding(first)
        more = self._consume(self.settings.inference.max_batch - 1, 0) if self.settings.inference.max_batch > 1 else []
        if more:
            if self._waiting is None:  # completed by a revoke, or dropped on loss, during that consume
                self._waiting = self._start_decoding(more)
            else:
                self._waiting.extend(self._start_decoding(more))

    def _fetch_next_and_complete(self) -> None:
        """A batch waits (decoding): take what has arrived since, without waiting, and start decoding it; then
        complete the waiting batch at once. The next batch is what arrived while the model ran this one."""
        assert self._waiting is not None
        messages = self._consume(self.settings.inference.max_batch, 0)
        fetched = self._start_decoding(messages) if messages else None
        if self._waiting is not None:  # not already completed by a revoke during the consume
            batch, self._waiting = self._waiting, None
            self._complete(batch)
        self._waiting = fetched

    def _consume(self, count: int, timeout_s: float) -> list[Message]:
        assert self._consumer is not None
        return [m for m in self._consumer.consume(count, timeout=timeout_s) if not self._is_consumer_error(m)]

    def _start_decoding(self, messages: list[Message]) -> FetchedBatch:
        batch = FetchedBatch()
        now = time.time()
        now_ms = int(now * 1000)
        for message in messages:
            batch.messages.append(message)
            batch.decoded.append(self._pool.submit(self._decode_timed, message, now_ms))
            batch.fetched.append(now)
        return batch

    def _complete(self, batch: FetchedBatch) -> None:
        """Steps 2-5 of the commit protocol for one fetched batch."""
        assert self._consumer is not None and self._producer is not None and self._committer is not None
        transactional = self.settings.inference.transactional
        if transactional:
            self._producer.begin_transaction()
        try:
            # With transactions the transaction carries the offsets, so the batch is not the committer's.
            self._batch = PendingBatch() if transactional else self._committer.begin()
            published, publish_started = self._infer_and_produce(batch)
            offsets = next_offsets(batch.messages)
            if transactional:
                self._producer.send_offsets_to_transaction(offsets, self._consumer.consumer_group_metadata(), 30)
                self._producer.commit_transaction(30)
            else:
                self._committer.seal(self._batch, offsets)
        except Exception:
            # Crash rather than guess: the group redelivers everything after the last commit.
            if transactional:
                self._producer.abort_transaction(30)
            raise
        self._observe_publish(published, publish_started)

    # --- steps --------------------------------------------------------------------------------------------
    def _infer_and_produce(self, batch: FetchedBatch) -> tuple[list[tuple[DecodedFrame, object]], float]:
        # Members are (message, frame, shadow variant or None): a shadow run infers a control frame again with
        # the experiment's candidate, for a paired comparison that never reaches counting.
        groups: dict[tuple, list[tuple[Message, DecodedFrame, str | None]]] = defaultdict(list)
        routes: dict[tuple, Route] = {}
        records: dict[int, bytes] = {}
        served_frames: dict[int, tuple[Route, Detections, float]] = {}
        shadowed: dict[int, tuple[str, Route, Detections, float]] = {}
        published: list[tuple[DecodedFrame, object, Detections]] = []
        decoded_of: dict[int, DecodedFrame] = {}
        times: dict[int, dict[str, float]] = {}  # per record: the stages of its timing header (ms since the epoch)
        end_reasons: dict[int, list[tuple[str, bytes]]] = {}  # per end marker: its END_REASON_HEADER, if any
        fetched_at: dict[int, float] = {}
        for message, future, fetched in zip(batch.messages, batch.decoded, batch.fetched):
            result, decoded = future.result()
            if isinstance(result, BadFrame):
                self._dead_letter(message, result)
                continue
            try:
                route = self.routes.route(result.experiment, result.variant)
            except BadFrame as bad:
                self._dead_letter(message, bad)
                continue
            times[id(message)] = {"fetched": fetched * 1000, "decoded": decoded * 1000}
            if result.ended:  # not a frame: passed on, in order, so that counting ends the camera's tracks
                records[id(message)] = self._detections_record(message, result, route.detector, None, 0.0, "END")
                end_reasons[id(message)] = [(k, v) for k, v in message.headers() or [] if k == END_REASON_HEADER]
                continue
            fetched_at[id(message)] = fetched
            self._observe_fetch(route.detector, message, fetched, decoded)
            if result.stale:
                detector = route.detector
                records[id(message)] = self._detections_record(message, result, detector, None, 0.0, "SKIPPED")
                self.metrics.frames.labels(detector.name, detector.version, result.variant, "skipped").inc()
                self.stats.frames_skipped += 1
                continue
            routes[route.key] = route
            groups[route.key].append((message, result, None))
            decoded_of[id(message)] = result
            shadow = self.routes.shadow_route(result.experiment, result.variant, result.camera_id, result.frame_seq)
            if shadow is not None:
                routes[shadow[1].key] = shadow[1]
                groups[shadow[1].key].append((message, result, shadow[0]))
        for key, members in groups.items():
            route = routes[key]
            detector = route.detector
            started = time.time()
            queue = self.metrics.queue.labels(detector.name, detector.version)
            for message, _, shadow_variant in members:
                if shadow_variant is None:
                    queue.observe(max(started - fetched_at[id(message)], 0.0))
            try:
                served = route.serve([frame.image for _, frame, _ in members])
            except Exception:  # a model that fails on some input must not take the worker (and its group) down
                log.exception("%s@%s failed on a batch of %d frames; marking them ERROR", detector.name,
                              detector.version, len(members))
                ended = time.time()
                for message, frame, shadow_variant in members:
                    if shadow_variant is None:
                        records[id(message)] = self._detections_record(message, frame, detector, None, 0.0, "ERROR")
                        self.metrics.frames.labels(detector.name, detector.version, frame.variant, "failed").inc()
                        times[id(message)].update(infer_start=started * 1000, infer_end=ended * 1000,
                                                  batch=len(members))
                continue
            ended = time.time()
            detector = served.detector
            self._observe_batch(detector, len(members))
            per_frame_ms = detector.last_timings.infer_ms / len(members)
            for (message, frame, shadow_variant), detections in zip(members, served.detections):
                if shadow_variant is not None:
                    shadowed[id(message)] = (shadow_variant, route, detections, per_frame_ms)
                    continue
                if id(message) in records:  # its own run failed (ERROR record); its shadow run did not
                    continue
                records[id(message)] = self._detections_record(message, frame, detector, detections, per_frame_ms,
                                                               fallback=served.fallback)
                if served.fallback:
                    self.metrics.fallback_frames.labels(detector.name, detector.version).inc()
                served_frames[id(message)] = (route, detections, per_frame_ms)
                published.append((frame, detector, detections))
                times[id(message)].update(infer_start=started * 1000, infer_end=ended * 1000, batch=len(members))
        publish_started = time.monotonic()
        topic = self.settings.kafka.detections_topic
        for message in batch.messages:  # input order, so each partition's output keeps its order
            value = records.get(id(message))
            if value is not None:
                timing = {**times[id(message)], "produced": time.time() * 1000}
                self._produce(topic, message.key(), value,
                              [*DETECTIONS.headers(), timing_header(timing), *end_reasons.get(id(message), ())])
            if id(message) in shadowed and id(message) in served_frames:
                pair = self._shadow_pair(decoded_of[id(message)], served_frames[id(message)],
                                         shadowed[id(message)])
                self._produce(self.settings.kafka.shadow_topic, message.key(), pair, SHADOW_PAIR.headers())
        return published, publish_started

    @staticmethod
    def _shadow_pair(frame: DecodedFrame, served: tuple[Route, Detections, float],
                     shadowed: tuple[str, Route, Detections, float]) -> bytes:
        control_route, control, control_ms = served
        candidate_variant, candidate_route, candidate, candidate_ms = shadowed
        return SHADOW_PAIR.encode({
            "experiment": frame.experiment, "camera_id": frame.camera_id, "frame_seq": frame.frame_seq,
            "capture_ts_ms": frame.capture_ts_ms, "control_variant": frame.variant,
            "candidate_variant": candidate_variant,
            "control_model_name": control_route.detector.name,
            "candidate_model_name": candidate_route.detector.name,
            "control_model_version": control_route.detector.version,
            "candidate_model_version": candidate_route.detector.version,
            "control_detections": len(control), "candidate_detections": len(candidate),
            "matched_boxes": int(match_detections(candidate, control).sum()),
            "control_infer_ms": control_ms, "candidate_infer_ms": candidate_ms,
        })

    def _decode(self, message: Message, now_ms: int) -> DecodedFrame | BadFrame:
        try:
            return decode_frame(message.value(), headers_dict(message.headers()), self.limits, now_ms)
        except BadFrame as bad:
            return bad

    def _decode_timed(self, message: Message, now_ms: int) -> tuple[DecodedFrame | BadFrame, float]:
        result = self._decode(message, now_ms)
        return result, time.time()

    def _detections_record(self, message: Message, frame: DecodedFrame, detector: Detector,
                           detections: Detections | None,
                           infer_ms: float, status: str = "OK", fallback: bool = False) -> bytes:
        detections = detections if detections is not None else Detections.empty()
        return DETECTIONS.encode({
            "camera_id": frame.camera_id, "frame_seq": frame.frame_seq, "capture_ts_ms": frame.capture_ts_ms,
            "width": frame.width, "height": frame.height, "status": status,
            "model_name": detector.name, "model_version": detector.version,
            "variant": frame.variant, "experiment": frame.experiment,
            "xyxy": detections.xyxy.reshape(-1).tolist(),
            "confidence": detections.confidence.tolist(),
            "class_id": detections.class_id.tolist(),
            "class_names": list(detector.manifest.class_names),
            "infer_ms": infer_ms, "inferred_ts_ms": int(time.time() * 1000),
            "source_partition": message.partition(), "source_offset": message.offset(),
            "fallback": fallback,
            "box_calibration": calibration_to_record(detector.manifest.box_calibration),
        })

    def _dead_letter(self, message: Message, bad: BadFrame) -> None:
        headers = dead_letter_headers(message.headers(), "infer", bad.code, bad.detail, bad.reason, message.topic(),
                                      message.partition(), message.offset())
        log.warning("dead-lettering %s/%d/%d: %s", message.topic(), message.partition(), message.offset(), bad)
        self._produce(self.settings.kafka.dead_letter_topic, message.key(), message.value(), headers)
        self.metrics.dead_letters.labels(bad.code, bad.detail).inc()
        self.stats.dead_letters += 1

    def _produce(self, topic: str, key: bytes | None, value: bytes | None,
                 headers: list[tuple[str, bytes]] | None) -> None:
        """Queue one record of the current batch, waiting while the producer's queue is full, unless asked to stop:
        then raise StoppedWhileQueueFull (the batch is never sealed, so none of its offsets is committed)."""
        assert self._producer is not None and self._batch is not None
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, headers=headers,
                                       on_delivery=self._batch.on_delivery)
                self._batch.expect()
                return
            except BufferError:  # the producer's queue is full: the broker is slow or unreachable
                if self._stop.is_set():
                    raise StoppedWhileQueueFull(
                        "asked to stop while the producer queue was full; the batch being produced stays "
                        "uncommitted and will be redone") from None
                self._producer.poll(0.1)

    def _is_consumer_error(self, message: Message) -> bool:
        error = message.error()
        if error is None:
            return False
        if error.code() != KafkaError._PARTITION_EOF:
            if error.fatal():
                raise KafkaException(error)
            log.warning("consumer error: %s", error)
        return True

    # --- metrics ------------------------------------------------------------------------------------------
    def _observe_fetch(self, detector: Detector, message: Message, fetched: float, decoded: float) -> None:
        labels = (detector.name, detector.version)
        kind, timestamp_ms = message.timestamp()
        if kind != TIMESTAMP_NOT_AVAILABLE and timestamp_ms > 0:  # clocks of other hosts may be ahead: clamp
            self.metrics.fetch.labels(*labels).observe(max(fetched - timestamp_ms / 1000, 0.0))
        self.metrics.decode.labels(*labels).observe(max(decoded - fetched, 0.0))

    def _observe_batch(self, detector: Detector, size: int) -> None:
        labels = (detector.name, detector.version)
        timings = detector.last_timings
        self.metrics.preprocess.labels(*labels).observe(timings.preprocess_ms / 1000)
        self.metrics.compute.labels(*labels).observe(timings.infer_ms / 1000)
        self.metrics.postprocess.labels(*labels).observe(timings.postprocess_ms / 1000)
        self.metrics.batches.labels(*labels).inc()
        self.metrics.batch_size.labels(*labels).observe(size)
        self.stats.batches += 1

    def _observe_publish(self, published: list[tuple[DecodedFrame, object, Detections]],
                         publish_started: float) -> None:
        now_ms = time.time() * 1000
        elapsed = time.monotonic() - publish_started
        for detector in {id(d): d for _, d, _ in published}.values():
            self.metrics.publish.labels(detector.name, detector.version).observe(elapsed)
        outputs: dict[tuple[int, str], list[tuple[DecodedFrame, object, Detections]]] = defaultdict(list)
        for frame, detector, detections in published:
            labels = (detector.name, detector.version)
            self.metrics.e2e.labels(*labels).observe(max(now_ms - frame.capture_ts_ms, 0) / 1000)
            self.metrics.frames.labels(*labels, frame.variant, "ok").inc()
            outputs[(id(detector), frame.variant)].append((frame, detector, detections))
        for (_, variant), frames in outputs.items():
            self.metrics.outputs.observe(frames[0][1], variant, [d for _, _, d in frames],
                                         [f.width * f.height for f, _, _ in frames])
        self.stats.frames_ok += len(published)

    def _refresh_lag(self) -> None:
        """Consumer lag per owned partition, from the high watermarks of recent fetches (no extra requests)."""
        now = time.monotonic()
        if now - self._lag_refreshed < LAG_REFRESH_S or not self._assigned:
            return
        self._lag_refreshed = now
        assert self._consumer is not None
        partitions = [TopicPartition(t, p) for t, p in sorted(self._assigned)]
        for position in self._consumer.position(partitions):
            _, high = self._consumer.get_watermark_offsets(position, cached=True)
            if position.offset >= 0 and high >= 0:
                labels = (position.topic, str(position.partition))
                self.metrics.lag.labels(*labels).set(max(high - position.offset, 0))
                self._lag_labels.add(labels)

