"""``camcount bench ceiling``: how many frames/s ONE inference worker process can move when the model costs nothing.

Sizing a GPU deployment needs two numbers the model does not set: the frames/s one worker process can push
through consume -> Avro decode -> JPEG decode -> letterbox into the batch -> model -> box decoding -> Avro encode ->
publish -> commit (beyond it, a faster GPU buys nothing: add worker processes), and what JPEG decoding costs per
CPU core (what the host must supply per frame/s).

The model is a real ONNX graph that does almost nothing (``models.tiny_graphs.register_null_detector``: yolov5
layout [N, 1, 85], one box per frame, its cost independent of the pixels), registered in a throwaway registry and
served on the CPU. Frames are the footage's own, re-encoded as ingest does (``producers.encoding``), optionally
scaled down. For each phase, ``frames`` records are first published to a fresh namespaced topic set, then an
``InferenceWorker`` (in a thread, as ``camcount bench pipeline`` runs it) drains them; the rate is frames over the
time from the worker's first fetch to the last detections record read back. Phases:

  * with decode: the worker exactly as deployed;
  * without JPEG decode: the same worker class with its per-message decode step (``_decode``, the function its
    decode pool runs) replaced by Avro decoding plus a lookup of the frame's already-decoded image, so everything
    but the JPEG decoder still runs; worker.py itself is unchanged;
  * JPEG decode alone, no broker: ``cv2.imdecode`` on one thread (frames/s per core), and the worker's decode
    function (``decode_frame``: Avro + header checks + imdecode) on a pool of ``decode_threads`` threads.

Process CPU time over each drain is reported too (the worker, its librdkafka threads and the bench's reader; the
broker is another process), so frames per CPU-second can be read off.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from camcount.stack import LocalStack
from foundation.kafka import base_config, consumer_config, producer_config
from foundation.provision import catalogue_topics, create_topics
from foundation.settings import Settings
from models.detector import Detector
from models.registry import ModelRegistry
from models.runtime import CPU
from models.tiny_graphs import NULL_DETECTOR_NAME, register_null_detector
from producers.encoding import encode_jpeg
from producers.sources import sample_frames
from schemas import DETECTIONS, FRAME, headers_dict
from stream_apps.inference.frames import DecodedFrame, FrameLimits, decode_frame
from stream_apps.inference.routing import RouteTable
from stream_apps.inference.worker import InferenceWorker

DISTINCT_FRAMES = 200
"""Distinct footage frames the published frames cycle through (evenly spaced over the video)."""
DECODE_SAMPLE = 400
"""JPEGs decoded per decode-only measurement."""


@dataclass
class CeilingFigures:
    frames: int
    batch: int
    partitions: int
    decode_threads: int
    jpeg_width: int
    jpeg_height: int
    jpeg_kbytes: float
    model: str
    model_input: int
    with_decode_fps: float
    """Worker as deployed: frames/s from its first fetch to the last detections record read back."""
    without_decode_fps: float
    """Same, JPEG decoding replaced by a lookup of the already-decoded image."""
    with_decode_cpu_cores: float
    """Process CPU seconds per wall second during the drain (worker, librdkafka threads, reader)."""
    without_decode_cpu_cores: float
    with_decode_records: int
    """Detections records read back (one per frame published when nothing was redone)."""
    without_decode_records: int
    with_decode_distinct_frames: int
    """Distinct (camera, frame_seq) among them: every frame published came back when equal to ``frames``."""
    without_decode_distinct_frames: int
    decode_fps_per_core: float
    """cv2.imdecode of these JPEGs on one thread."""
    decode_fps_pool: float
    """The worker's decode function (Avro + checks + imdecode) on decode_threads threads."""
    cpu: str
    cpus: int

    def as_dict(self) -> dict:
        return asdict(self)


class _CeilingWorker(InferenceWorker):
    """The deployed worker with two benchmark hooks on its own steps: the time of its first non-empty fetch, and,
    when ``images`` is given, Avro decoding plus a lookup of the already-decoded image instead of ``_decode``.

    Both hooks override methods of InferenceWorker; ``check_hooks`` fails loudly if the worker no longer calls
    them, so a refactored worker can never make the benchmark silently measure something else.
    """

    HOOKED = ("_decode", "_start_decoding")

    def __init__(self, settings: Settings, routes: RouteTable, images: list[np.ndarray] | None = None) -> None:
        missing = [name for name in self.HOOKED if not callable(getattr(InferenceWorker, name, None))]
        if missing:
            raise RuntimeError(f"InferenceWorker no longer has {missing}: update camcount/ceiling_bench.py")
        super().__init__(settings, routes)
        self._images = images
        self.first_fetch: float | None = None
        self.lookups = 0
        """Calls of the image-lookup hook (approximate: incremented from the decode pool's threads)."""

    def _start_decoding(self, messages: list[Message]):  # returns what InferenceWorker._start_decoding does
        if self.first_fetch is None:
            self.first_fetch = time.perf_counter()
        return super()._start_decoding(messages)

    def _decode(self, message: Message, now_ms: int):  # what InferenceWorker._decode returns
        if self._images is None:
            return super()._decode(message, now_ms)
        record = FRAME.decode(message.value(), headers_dict(message.headers()))
        image = self._images[record["frame_seq"] % len(self._images)]
        self.lookups += 1
        return DecodedFrame(record["camera_id"], record["frame_seq"], record["capture_ts_ms"], record["variant"],
                            record["experiment"], image.shape[1], image.shape[0], image)

    def check_hooks(self) -> None:
        if self.first_fetch is None or (self._images is not None and not self.lookups):
            raise RuntimeError(f"the benchmark hooks on InferenceWorker were not called (first fetch "
                               f"{self.first_fetch}, {self.lookups} image lookups): update camcount/ceiling_bench.py")


def footage_jpegs(footage: Path, distinct: int, width: int | None) -> tuple[list[bytes], list[np.ndarray]]:
    """``distinct`` frames evenly spaced over ``footage``, scaled to ``width`` (aspect kept; never up), JPEG-encoded
    as ingest does; returns the JPEGs and the images as a consumer decodes them."""
    jpegs = []
    for image in sample_frames(footage, distinct):
        height, source_width = image.shape[:2]
        if width and width < source_width:
            image = cv2.resize(image, (width, round(height * width / source_width)), interpolation=cv2.INTER_AREA)
        jpegs.append(encode_jpeg(image))
    return jpegs, [cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR) for jpeg in jpegs]


def _frame_payload(jpeg: bytes, seq: int, size: tuple[int, int]) -> tuple[str, bytes]:
    camera = f"bench-{seq % 8}"
    return camera, FRAME.encode({"camera_id": camera, "frame_seq": seq, "capture_ts_ms": int(time.time() * 1000),
                                 "width": size[0], "height": size[1], "image": jpeg})


def decode_rates(jpegs: list[bytes], threads: int, limits: FrameLimits) -> tuple[float, float]:
    """(imdecode frames/s on one thread, the worker's decode_frame frames/s on ``threads`` threads)."""
    sample = list(itertools.islice(itertools.cycle(jpegs), DECODE_SAMPLE))
    started = time.perf_counter()
    for jpeg in sample:
        cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    per_core = len(sample) / (time.perf_counter() - started)
    size = cv2.imdecode(np.frombuffer(jpegs[0], np.uint8), cv2.IMREAD_COLOR).shape[1::-1]
    payloads = [_frame_payload(jpeg, seq, size)[1] for seq, jpeg in enumerate(sample)]
    headers = headers_dict(FRAME.headers())
    with ThreadPoolExecutor(threads) as pool:
        started = time.perf_counter()
        list(pool.map(lambda payload: decode_frame(payload, headers, limits), payloads))
        pooled = len(payloads) / (time.perf_counter() - started)
    return per_core, pooled


def publish_frames(settings: Settings, jpegs: list[bytes], frames: int, size: tuple[int, int]) -> None:
    """``frames`` frame records cycling through ``jpegs``, sequence numbers 0..frames-1, on 8 cameras."""
    producer = Producer(producer_config(settings))
    for seq in range(frames):
        camera, value = _frame_payload(jpegs[seq % len(jpegs)], seq, size)
        while True:
            try:
                producer.produce(settings.kafka.frames_topic, key=camera.encode(), value=value,
                                 headers=FRAME.headers())
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    if producer.flush(60):
        raise TimeoutError("frames still unacknowledged 60 s after publishing")


def read_detections(settings: Settings, expected: int, timeout_s: float,
                    producer_alive: Callable[[], bool] = lambda: True) -> tuple[list[bytes], float]:
    """Values of the first ``expected`` detections records (not decoded while timing) and when the last arrived;
    gives up when ``producer_alive()`` turns false."""
    consumer = Consumer(consumer_config(settings, f"bench-reader-{uuid.uuid4().hex[:8]}"))
    topic = settings.kafka.detections_topic
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    values: list[bytes] = []
    last = time.perf_counter()
    deadline = time.monotonic() + timeout_s
    try:
        while len(values) < expected and time.monotonic() < deadline and producer_alive():
            batch = consumer.consume(1000, timeout=0.2)
            values.extend(m.value() for m in batch if m.error() is None)
            if batch:
                last = time.perf_counter()
    finally:
        consumer.close()
    if len(values) < expected:
        why = f"in {timeout_s:.0f} s" if producer_alive() else "before the worker stopped (see its traceback)"
        raise TimeoutError(f"only {len(values)} of {expected} detections records arrived {why}")
    return values, last


def drop_topics(settings: Settings, extra: Sequence[str] = ()) -> None:
    """Delete the namespace's topics and ``extra``: the local broker keeps everything in memory."""
    admin = AdminClient(base_config(settings))
    for future in admin.delete_topics([*catalogue_topics(settings), *extra]).values():
        try:
            future.result()
        except Exception:  # noqa: BLE001 - cleanup of a unique namespace; nothing else reads it
            pass


@dataclass
class Drain:
    fps: float
    cpu_cores: float
    records: int
    """Detections records read back."""
    distinct_frames: int
    """Distinct (camera, frame_seq) among them."""


def drain_once(settings: Settings, detector: Detector, jpegs: list[bytes], frames: int,
               images: list[np.ndarray] | None) -> Drain:
    """Publish ``frames`` frames to a fresh namespace and let a worker drain them. ``images``: the decoded
    JPEGs, in order, to skip JPEG decoding in the worker (see the module docstring)."""
    drained = settings.namespaced(f"ceil{uuid.uuid4().hex[:6]}")
    create_topics(drained)
    try:
        height, width = cv2.imdecode(np.frombuffer(jpegs[0], np.uint8), cv2.IMREAD_COLOR).shape[:2]
        publish_frames(drained, jpegs, frames, (width, height))
        worker = _CeilingWorker(drained, RouteTable(detector), images)
        thread = threading.Thread(target=worker.run, name="ceiling-worker", daemon=True)
        thread.start()
        if not worker.ready.wait(60):
            raise TimeoutError("the benchmark worker got no partitions within 60 s")
        cpu_started, wall_started = time.process_time(), time.perf_counter()
        values, last = read_detections(drained, frames, 60 + frames / 20, thread.is_alive)
        cpu_cores = (time.process_time() - cpu_started) / (time.perf_counter() - wall_started)
        worker.stop()
        thread.join(30)
        worker.check_hooks()
        assert worker.first_fetch is not None
        distinct = {(r["camera_id"], r["frame_seq"]) for r in map(DETECTIONS.decode, values)}
        return Drain(frames / (last - worker.first_fetch), cpu_cores, len(values), len(distinct))
    finally:
        drop_topics(drained)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return "unknown"


def bench_ceiling(settings: Settings, footage: Path, frames: int = 5000, batch: int = 32, width: int | None = 384,
                  input_size: int = 32, partitions: int = 4, decode_threads: int | None = None) -> CeilingFigures:
    """Measure the per-worker ceiling (see the module docstring) on the stack ``settings`` name (started if local
    and down); the bench's topics are a fresh namespace of them, deleted afterwards. ``width``: scale frames down
    to this width (None: as the footage has them); ``input_size``: the null detector's square input, which sets
    the letterbox cost (the model's own cost does not depend on it)."""
    LocalStack(settings).up()
    threads = decode_threads or settings.inference.decode_threads
    inference = settings.inference.model_copy(update={"max_batch": batch, "metrics_port": 0,
                                                      "decode_threads": threads})
    base = settings.model_copy(update={
        "inference": inference, "kafka": settings.kafka.model_copy(update={"partitions": partitions})})
    jpegs, images = footage_jpegs(footage, min(DISTINCT_FRAMES, frames), width)
    limits = FrameLimits(inference.max_frame_bytes, inference.max_frame_pixels)
    per_core, pooled = decode_rates(jpegs, threads, limits)
    with tempfile.TemporaryDirectory(prefix="camcount-ceiling-") as scratch:
        registry = ModelRegistry(Path(scratch) / "registry")
        manifest = register_null_detector(registry, Path(scratch), input_size=input_size)
        detector = Detector.from_model(registry.resolve(f"{manifest.name}@{manifest.version}"), providers=[CPU],
                                       max_batch=batch)
        with_decode = drain_once(base, detector, jpegs, frames, None)
        without_decode = drain_once(base, detector, jpegs, frames, images)
    height, width_px = images[0].shape[:2]
    return CeilingFigures(
        frames=frames, batch=batch, partitions=partitions, decode_threads=threads, jpeg_width=width_px,
        jpeg_height=height, jpeg_kbytes=round(sum(map(len, jpegs)) / len(jpegs) / 1024, 1),
        model=f"{NULL_DETECTOR_NAME}@{manifest.version}", model_input=input_size,
        with_decode_fps=round(with_decode.fps, 1), without_decode_fps=round(without_decode.fps, 1),
        with_decode_cpu_cores=round(with_decode.cpu_cores, 2),
        without_decode_cpu_cores=round(without_decode.cpu_cores, 2),
        with_decode_records=with_decode.records, without_decode_records=without_decode.records,
        with_decode_distinct_frames=with_decode.distinct_frames,
        without_decode_distinct_frames=without_decode.distinct_frames,
        decode_fps_per_core=round(per_core, 1), decode_fps_pool=round(pooled, 1), cpu=cpu_model(),
        cpus=os.cpu_count() or 1,
    )

