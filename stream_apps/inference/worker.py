"""The inference worker: one member of the ``frames`` consumer group.

Commit protocol, per batch of frames taken from the partitions this worker owns:
  1. decode and validate every frame (thread pool); bad ones go to the dead-letter topic;
  2. run each variant's frames through its model as one batch;
  3. produce one detections record per good frame, keyed by camera id, in input order;
  4. wait until the broker acknowledged every record of the batch (or, with transactions, commit the
     transaction that also carries the offsets);
  5. commit the offsets just past the batch.
Invariant: an offset is committed only after every record derived from the frames before it is durable, so a
crashed worker loses no frame; what it did not commit is redone by the next owner (at-least-once), and with
transactions enabled the redone records replace aborted ones (exactly-once for read_committed readers).
Batches are processed synchronously between polls, so a rebalance never finds work in flight.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from camcount.kafka_config import consumer_config, producer_config, wait_for_broker
from camcount.settings import Settings
from models.detections import Detections
from schemas import DETECTIONS, headers_dict
from stream_apps.inference.frames import BadFrame, DecodedFrame, FrameErrorCode, FrameLimits, decode_frame
from stream_apps.inference.metrics import InferenceMetrics

log = logging.getLogger(__name__)

PRODUCTION_VARIANT = ""


class DeliveryFailed(Exception):
    """The broker did not acknowledge some records of a batch; its offsets stay uncommitted."""


@dataclass
class WorkerStats:
    frames_ok: int = 0
    dead_letters: int = 0
    batches: int = 0


class ModelRoutes:
    """Which detector serves which variant. Frames without a variant get the production model."""

    def __init__(self, production, variants: dict | None = None) -> None:
        self._routes = {PRODUCTION_VARIANT: production, **(variants or {})}

    def for_variant(self, variant: str):
        detector = self._routes.get(variant)
        if detector is None:
            raise BadFrame(FrameErrorCode.UNKNOWN_VARIANT,
                           f"variant {variant!r} is not served here (known: {sorted(self._routes)}); "
                           f"start an experiment that defines it or clear the variant header")
        return detector


class InferenceWorker:
    def __init__(self, settings: Settings, routes: ModelRoutes, metrics: InferenceMetrics | None = None) -> None:
        self.settings = settings
        self.routes = routes
        self.metrics = metrics or InferenceMetrics()
        self.stats = WorkerStats()
        self.limits = FrameLimits(settings.inference.max_frame_bytes, settings.inference.max_frame_pixels)
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(settings.inference.decode_threads, thread_name_prefix="decode")
        self._delivery_errors: list[KafkaError] = []
        self.ready = threading.Event()
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None

    def stop(self, *_: object) -> None:
        self._stop.set()

    # --- set-up -------------------------------------------------------------------------------------------
    def _connect(self) -> None:
        s = self.settings
        wait_for_broker(s.kafka_bootstrap(), timeout_s=15)
        overrides = {}
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
        self._consumer.subscribe([s.kafka.frames_topic], on_assign=self._on_assign, on_revoke=self._on_revoke)

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("assigned %s", sorted(p.partition for p in partitions))
        self.ready.set()

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Batches complete (and commit) before the next poll, so nothing is in flight for these partitions.
        log.info("revoked %s", sorted(p.partition for p in partitions))

    # --- main loop ----------------------------------------------------------------------------------------
    def run(self) -> WorkerStats:
        self._connect()
        assert self._consumer is not None and self._producer is not None
        max_batch = self.settings.inference.max_batch
        timeout_s = self.settings.inference.max_delay_ms / 1000.0
        try:
            while not self._stop.is_set():
                messages = self._consumer.consume(max_batch, timeout=max(timeout_s, 0.05))
                if messages:
                    self.process_batch(messages)
        finally:
            self._pool.shutdown(wait=True)
            self._consumer.close()
            self._producer.flush(10)
        return self.stats

    def process_batch(self, messages: list[Message]) -> None:
        fetched = time.monotonic()
        assert self._consumer is not None and self._producer is not None
        messages = [m for m in messages if not self._is_consumer_error(m)]
        if not messages:
            return
        transactional = self.settings.inference.transactional
        if transactional:
            self._producer.begin_transaction()
        try:
            self._delivery_errors.clear()
            published, publish_started = self._infer_and_produce(messages, fetched)
            offsets = self._next_offsets(messages)
            if transactional:
                self._producer.send_offsets_to_transaction(offsets, self._consumer.consumer_group_metadata(), 30)
                self._producer.commit_transaction(30)
            else:
                remaining = self._producer.flush(30)
                if remaining or self._delivery_errors:
                    raise DeliveryFailed(f"{remaining} records unacknowledged, errors: {self._delivery_errors[:3]}")
                self._consumer.commit(offsets=offsets, asynchronous=False)
        except Exception:
            if transactional:
                self._producer.abort_transaction(30)
                self._rewind(messages)
            raise
        self._observe_publish(published, publish_started)

    # --- steps --------------------------------------------------------------------------------------------
    def _infer_and_produce(
        self, messages: list[Message], fetched: float
    ) -> tuple[list[tuple[DecodedFrame, object]], float]:
        """Steps 1-3 of the commit protocol; returns the (frame, detector) pairs published and when publishing began."""
        decoded = list(self._pool.map(self._decode, messages))
        groups: dict[int, list[tuple[Message, DecodedFrame]]] = defaultdict(list)
        detectors = {}
        for message, result in zip(messages, decoded):
            if isinstance(result, BadFrame):
                self._dead_letter(message, result)
                continue
            try:
                detector = self.routes.for_variant(result.variant)
            except BadFrame as bad:
                self._dead_letter(message, bad)
                continue
            detectors[id(detector)] = detector
            groups[id(detector)].append((message, result))
        started = time.monotonic()
        # One record per frame, produced in input order so each partition's output keeps its order.
        records: dict[int, bytes] = {}
        published: list[tuple[DecodedFrame, object]] = []
        for key, members in groups.items():
            detector = detectors[key]
            labels = (detector.name, detector.version)
            self.metrics.queue.labels(*labels).observe(started - fetched)
            results = detector.detect([frame.image for _, frame in members])
            self._observe_batch(detector, len(members))
            for (message, frame), detections in zip(members, results):
                records[id(message)] = self._detections_record(message, frame, detector, detections, len(members))
                published.append((frame, detector))
        publish_started = time.monotonic()
        topic = self.settings.kafka.detections_topic
        for message in messages:
            value = records.get(id(message))
            if value is not None:
                self._produce(topic, message.key(), value, DETECTIONS.headers())
        return published, publish_started

    def _decode(self, message: Message) -> DecodedFrame | BadFrame:
        try:
            return decode_frame(message.value(), headers_dict(message.headers()), self.limits)
        except BadFrame as bad:
            return bad

    def _detections_record(
        self, message: Message, frame: DecodedFrame, detector, detections: Detections, len_batch: int
    ) -> bytes:
        height, width = frame.image.shape[:2]
        return DETECTIONS.encode({
            "camera_id": frame.camera_id, "frame_seq": frame.frame_seq, "capture_ts_ms": frame.capture_ts_ms,
            "width": width, "height": height, "status": "OK",
            "model_name": detector.name, "model_version": detector.version,
            "variant": frame.variant, "experiment": frame.experiment,
            "xyxy": detections.xyxy.reshape(-1).tolist(),
            "confidence": detections.confidence.tolist(),
            "class_id": detections.class_id.tolist(),
            "class_names": list(detector.manifest.class_names),
            "infer_ms": detector.last_timings.infer_ms / max(len_batch, 1),
            "source_partition": message.partition(), "source_offset": message.offset(),
        })

    def _dead_letter(self, message: Message, bad: BadFrame) -> None:
        headers = list(message.headers() or []) + [
            ("dlq-error-code", bad.code.value.encode()),
            ("dlq-reason", bad.reason.encode(errors="replace")),
            ("dlq-source", f"{message.topic()}/{message.partition()}/{message.offset()}".encode()),
        ]
        log.warning("dead-lettering %s/%d/%d: %s", message.topic(), message.partition(), message.offset(), bad)
        self._produce(self.settings.kafka.dead_letter_topic, message.key(), message.value(), headers)
        self.metrics.dead_letters.labels(bad.code.value).inc()
        self.stats.dead_letters += 1

    def _produce(self, topic: str, key: bytes | None, value: bytes | None, headers) -> None:
        assert self._producer is not None
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, headers=headers, on_delivery=self._on_delivery)
                return
            except BufferError:
                self._producer.poll(0.1)

    def _on_delivery(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            self._delivery_errors.append(error)

    @staticmethod
    def _next_offsets(messages: list[Message]) -> list[TopicPartition]:
        highest: dict[tuple[str, int], int] = {}
        for m in messages:
            key = (m.topic(), m.partition())
            highest[key] = max(highest.get(key, -1), m.offset())
        return [TopicPartition(t, p, o + 1) for (t, p), o in sorted(highest.items())]

    def _rewind(self, messages: list[Message]) -> None:
        """After an aborted transaction, seek back to the batch's first offsets so it is redone."""
        assert self._consumer is not None
        lowest: dict[tuple[str, int], int] = {}
        for m in messages:
            key = (m.topic(), m.partition())
            lowest[key] = min(lowest.get(key, m.offset()), m.offset())
        for (topic, partition), offset in lowest.items():
            self._consumer.seek(TopicPartition(topic, partition, offset))

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
    def _observe_batch(self, detector, size: int) -> None:
        labels = (detector.name, detector.version)
        timings = detector.last_timings
        self.metrics.preprocess.labels(*labels).observe(timings.preprocess_ms / 1000)
        self.metrics.compute.labels(*labels).observe(timings.infer_ms / 1000)
        self.metrics.postprocess.labels(*labels).observe(timings.postprocess_ms / 1000)
        self.metrics.batches.labels(*labels).inc()
        self.metrics.batch_size.labels(*labels).observe(size)
        self.stats.batches += 1

    def _observe_publish(self, published: list[tuple[DecodedFrame, object]], publish_started: float) -> None:
        now_ms = time.time() * 1000
        elapsed = time.monotonic() - publish_started
        for detector in {id(d): d for _, d in published}.values():
            self.metrics.publish.labels(detector.name, detector.version).observe(elapsed)
        for frame, detector in published:
            labels = (detector.name, detector.version)
            self.metrics.e2e.labels(*labels).observe(max(now_ms - frame.capture_ts_ms, 0) / 1000)
            self.metrics.frames.labels(*labels, frame.variant, "ok").inc()
        self.stats.frames_ok += len(published)
