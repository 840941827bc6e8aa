"""``camcount bench pipeline``: the inference worker through the broker versus the same work in-process.

Both runs use the same JPEG frames of the same footage, the same model, batch size and decode threads, one after
the other in one process, so their ratio is the cost of Kafka, serialisation and commits:

  * in-process: decode (thread pool) -> detect, batch by batch, as fast as it goes;
  * pipeline, throughput: all frames are first published to a fresh ``frames`` topic, then a worker drains it;
    the rate is frames over the time from the worker's first fetch to the last detections record received;
  * pipeline, latency: frames are published paced at ``load`` (default 80%) of the in-process rate, so the
    worker keeps up, and each record's end-to-end latency is its receive time minus its capture time.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from camcount.stack import LocalStack
from foundation.kafka import consumer_config, producer_config
from foundation.provision import create_topics
from foundation.settings import Settings
from models.detector import Detector
from models.loading import load_detector
from producers.encoding import encode_jpeg
from producers.sources import FrameSource, Pacer
from schemas import DETECTIONS, FRAME, headers_dict
from stream_apps.inference.routing import RouteTable
from stream_apps.inference.worker import InferenceWorker


@dataclass
class PipelineFigures:
    frames: int
    batch: int
    provider: str
    in_process_fps: float
    pipeline_fps: float
    ratio: float
    paced_fps: float
    e2e_p50_ms: float
    e2e_p95_ms: float

    def as_dict(self) -> dict:
        return asdict(self)


def _jpeg_frames(footage: Path, count: int) -> list[bytes]:
    frames = itertools.islice(itertools.cycle(list(itertools.islice(FrameSource(str(footage)).frames(), count))),
                              count)
    return [encode_jpeg(f.image) for f in frames]


def _in_process_fps(detector: Detector, jpegs: list[bytes], batch: int, threads: int) -> float:
    decode = lambda data: cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # noqa: E731
    with ThreadPoolExecutor(threads) as pool:
        started = time.perf_counter()
        for start in range(0, len(jpegs), batch):
            detector.detect(list(pool.map(decode, jpegs[start:start + batch])))
        return len(jpegs) / (time.perf_counter() - started)


def _publish(settings: Settings, jpegs: list[bytes], fps: float = 0.0) -> None:
    producer = Producer(producer_config(settings))
    pacer = Pacer(fps)
    for seq, jpeg in enumerate(jpegs):
        pacer.wait()
        camera = f"bench-{seq % 4}"
        value = FRAME.encode({"camera_id": camera, "frame_seq": seq, "capture_ts_ms": int(time.time() * 1000),
                              "width": 768, "height": 576, "image": jpeg})
        producer.produce(settings.kafka.frames_topic, key=camera.encode(), value=value, headers=FRAME.headers())
        producer.poll(0)
    producer.flush(30)


def _drain(settings: Settings, expected: int, timeout_s: float) -> tuple[list[float], float]:
    """Reads detections until ``expected`` arrived; returns per-record e2e latencies (ms) and the last arrival."""
    consumer = Consumer(consumer_config(settings, f"bench-reader-{uuid.uuid4().hex[:8]}"))
    # Assigned, not subscribed: a group join (slow on some brokers) would delay the first reads and be
    # misread as pipeline latency.
    topic = settings.kafka.detections_topic
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    latencies: list[float] = []
    last = time.perf_counter()
    deadline = time.monotonic() + timeout_s
    try:
        while len(latencies) < expected and time.monotonic() < deadline:
            for message in consumer.consume(500, timeout=0.2):
                if message.error() is None:
                    record = DETECTIONS.decode(message.value(), headers_dict(message.headers()))
                    latencies.append(time.time() * 1000 - record["capture_ts_ms"])
                    last = time.perf_counter()
    finally:
        consumer.close()
    if len(latencies) < expected:
        raise TimeoutError(f"only {len(latencies)} of {expected} detections records arrived in {timeout_s:.0f} s")
    return latencies, last


def _run_worker(
    settings: Settings, detector: Detector, jpegs: list[bytes], paced_fps: float
) -> tuple[list[float], float]:
    """Runs a worker on ``jpegs``; returns e2e latencies and frames/s from partition assignment to the last record."""
    worker = InferenceWorker(settings, RouteTable(detector))
    thread = threading.Thread(target=worker.run, name="bench-worker", daemon=True)
    if not paced_fps:
        _publish(settings, jpegs)
    thread.start()
    if not worker.ready.wait(60):
        raise TimeoutError("the benchmark worker got no partitions within 60 s")
    started = time.perf_counter()
    if paced_fps:  # publish from a thread while this one reads the detections as they arrive
        publisher = threading.Thread(target=_publish, args=(settings, jpegs, paced_fps), daemon=True)
        publisher.start()
    latencies, last = _drain(settings, len(jpegs), timeout_s=60 + len(jpegs) / 5)
    worker.stop()
    thread.join(30)
    return latencies, len(jpegs) / (last - started)


def bench_pipeline(settings: Settings, footage: Path, frames: int, batch: int, load: float = 0.8) -> PipelineFigures:
    LocalStack(settings).up()
    detector = load_detector(settings, max_batch=batch)
    jpegs = _jpeg_frames(footage, frames)
    threads = settings.inference.decode_threads
    _in_process_fps(detector, jpegs[: batch * 2], batch, threads)  # warm caches like the worker's warm-up
    in_process = _in_process_fps(detector, jpegs, batch, threads)
    inference = settings.inference.model_copy(update={"max_batch": batch, "metrics_port": 0})
    base = settings.model_copy(update={"inference": inference})
    drained = base.namespaced(f"bench{uuid.uuid4().hex[:6]}", partitions=4)
    create_topics(drained)
    _, pipeline_fps = _run_worker(drained, detector, jpegs, paced_fps=0)
    paced = base.namespaced(f"bench{uuid.uuid4().hex[:6]}", partitions=4)
    create_topics(paced)
    paced_fps = load * in_process
    latencies, _ = _run_worker(paced, detector, jpegs, paced_fps=paced_fps)
    return PipelineFigures(
        frames=frames, batch=batch, provider=detector.provider, in_process_fps=round(in_process, 1),
        pipeline_fps=round(pipeline_fps, 1), ratio=round(pipeline_fps / in_process, 3),
        paced_fps=round(paced_fps, 1), e2e_p50_ms=round(float(np.percentile(latencies, 50)), 1),
        e2e_p95_ms=round(float(np.percentile(latencies, 95)), 1),
    )
