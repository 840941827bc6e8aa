"""``camcount bench pipeline``: the inference worker through the broker versus the same work in-process, and where
a frame's latency goes on its way through the broker and the worker.

All runs use the same JPEG frames of the same footage, the same model and decode threads, one after the other. The
worker runs in a thread of this process; the cameras' publisher and the downstream reader run in a child process,
as ingest and the counting app do in production (in one process their Python threads would take turns with the
worker's for the interpreter lock). Every timestamp is this host's wall clock:

  * batch-1 reference: one frame's ``detect`` (preprocess + inference + postprocess) and one JPEG decode, timed
    back to back: the compute a frame's latency cannot go below;
  * throughput, per max batch size: in-process, decode (thread pool) -> detect, batch by batch, as fast as it goes;
    through the broker, all frames are first published to a fresh ``frames`` topic, then a worker drains it; the
    rate is frames over the time from the worker's partition assignment to the last detections record received.
    Their ratio is the cost of Kafka, serialisation and commits. The two alternate for ``rounds`` rounds and each
    round's ratio is taken from its own pair, so a neighbour that slows the host for a while moves both sides of
    a ratio instead of one; the median round is reported, with the CPU time each side spent per frame: this
    process in-process, and through the broker the worker's process, its neighbours' process and the local broker
    (when the local stack runs it), so a ratio under 1 is traced to the process that spent the difference;
  * latency, per load: frames are published paced at ``load`` x the in-process rate (of the largest batch size, the
    worker's max batch), and each frame's capture -> detections-read time is split into the stages of
    :data:`BUDGET`: the publisher notes each frame's delivery acknowledgement, the worker's timing header
    (``stream_apps.inference.metrics.TIMING_HEADER``) gives fetch, decode, inference and produce times, and the
    reader notes when it got the record.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import psutil
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from camcount.ceiling_bench import drop_topics
from camcount.stack import LocalStack
from foundation.kafka import consumer_config, producer_config
from foundation.process_metrics import cpu_seconds
from foundation.provision import create_topics
from foundation.settings import Settings
from models.detector import Detector
from models.loading import load_detector
from producers.encoding import encode_jpeg
from producers.sources import FrameSource
from schemas import DETECTIONS, FRAME, headers_dict
from stream_apps.inference.metrics import TIMING_HEADER, parse_timing
from stream_apps.inference.routing import RouteTable
from stream_apps.inference.worker import InferenceWorker

# (key, label, from, to): consecutive stages of one frame, so their times add up to its end-to-end latency.
# capture and appended come from the publisher, read from the reader, the rest from the worker's timing header.
BUDGET: tuple[tuple[str, str, str, str], ...] = (
    ("append", "capture -> broker append (ack)", "capture", "appended"),
    ("fetch", "broker -> worker fetch", "appended", "fetched"),
    ("decode", "decode (incl. waiting for a thread)", "fetched", "decoded"),
    ("queue", "queue for the model", "decoded", "infer_start"),
    ("inference", "inference (its whole batch)", "infer_start", "infer_end"),
    ("publish", "publish (inference end -> produce)", "infer_end", "produced"),
    ("read", "broker -> downstream reader", "produced", "read"),
)
E2E = ("e2e", "end to end (capture -> read)", "capture", "read")
BUDGET_LABELS = {key: label for key, label, _, _ in (*BUDGET, E2E)}


@dataclass
class Percentiles:
    """ms; None when nothing was measured."""

    p50: float | None
    p95: float | None
    p99: float | None
    count: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Percentiles:
        if not values:
            return cls(None, None, None, 0)
        p50, p95, p99 = (round(float(v), 1) for v in np.percentile(values, [50, 95, 99]))
        return cls(p50, p95, p99, len(values))


@dataclass
class CpuPerFrame:
    """CPU time (user + system, ms) per frame, medians over the rounds; ``broker`` is None unless the broker is
    the local stack's process on this host."""

    in_process: float
    worker: float
    neighbours: float
    broker: float | None


@dataclass
class ThroughputFigures:
    """Medians over the rounds; ``ratios`` has every round's pipeline / in-process ratio, in run order."""

    batch: int
    in_process_fps: float
    pipeline_fps: float
    ratio: float
    ratios: list[float] = field(default_factory=list)
    cpu_ms: CpuPerFrame | None = None


@dataclass
class LatencyFigures:
    load: float
    max_batch: int
    paced_fps: float
    stages: dict[str, Percentiles]  # BUDGET keys, then "e2e"
    batch_mean: float
    batch_max: int


@dataclass
class PipelineFigures:
    frames: int
    model: str
    provider: str
    batch1_detect_ms: Percentiles
    jpeg_decode_ms: Percentiles
    throughput: list[ThroughputFigures] = field(default_factory=list)
    latency: list[LatencyFigures] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def stage_budget(samples: Sequence[dict[str, float]]) -> dict[str, Percentiles]:
    """Percentiles (ms) of each stage of :data:`BUDGET` and of end to end, over per-frame timestamp dicts (ms since
    the epoch, keyed capture, appended, fetched, ...); a frame lacking one end of a stage is left out of that
    stage."""
    budget = {}
    for key, _, start, end in (*BUDGET, E2E):
        budget[key] = Percentiles.of([s[end] - s[start] for s in samples if start in s and end in s])
    return budget


def _jpeg_frames(footage: Path, count: int) -> list[bytes]:
    frames = itertools.islice(itertools.cycle(list(itertools.islice(FrameSource(str(footage)).frames(), count))),
                              count)
    return [encode_jpeg(f.image) for f in frames]


def _decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def _in_process_fps(detector: Detector, jpegs: list[bytes], batch: int, threads: int) -> tuple[float, float]:
    """frames/s, and this process's CPU seconds over the run."""
    me = psutil.Process()
    with ThreadPoolExecutor(threads) as pool:
        cpu = cpu_seconds(me)
        started = time.perf_counter()
        for start in range(0, len(jpegs), batch):
            detector.detect(list(pool.map(_decode, jpegs[start:start + batch])))
        return len(jpegs) / (time.perf_counter() - started), cpu_seconds(me) - cpu


def _batch1_reference(detector: Detector, jpegs: list[bytes], runs: int = 20) -> tuple[Percentiles, Percentiles]:
    """ms of one frame's detect (batch 1) and of one JPEG decode, ``runs`` times each on distinct frames."""
    detect_ms, decode_ms = [], []
    for jpeg in itertools.islice(itertools.cycle(jpegs), runs):
        started = time.perf_counter()
        image = _decode(jpeg)
        decoded = time.perf_counter()
        detector.detect([image])
        decode_ms.append((decoded - started) * 1000)
        detect_ms.append((time.perf_counter() - decoded) * 1000)
    return Percentiles.of(detect_ms), Percentiles.of(decode_ms)


def _publish(settings: Settings, jpegs: list[bytes], fps: float = 0.0, appended: dict[int, float] | None = None
             ) -> None:
    """Publishes ``jpegs`` as frames of 4 cameras, ``fps`` apart (0: at once); ``appended`` gets each frame's
    delivery-acknowledgement time (ms since the epoch) by frame_seq. Between frames it polls the producer, so
    acknowledgements are noted when they arrive, not when the next frame is due."""
    producer = Producer(producer_config(settings))
    # A new idempotent producer's first acknowledgement takes 0.5-1 s here (connection, metadata, producer id). A
    # camera's ingestor pays that once at start-up; counted in a latency run, it put a backlog at the front of the
    # stream that a worker at 80 % load took seconds to drain, and that dominated the run's p95.
    producer.produce(_warmup_topic(settings), value=b"")
    if producer.flush(30):
        raise TimeoutError(f"the bench publisher's warm-up record to {_warmup_topic(settings)} was not acknowledged")
    period = 1.0 / fps if fps > 0 else 0.0
    started = time.monotonic()
    for seq, jpeg in enumerate(jpegs):
        while (wait := started + seq * period - time.monotonic()) > 0:
            producer.poll(wait)
        camera = f"bench-{seq % 4}"
        value = FRAME.encode({"camera_id": camera, "frame_seq": seq, "capture_ts_ms": int(time.time() * 1000),
                              "width": 768, "height": 576, "image": jpeg})
        producer.produce(settings.kafka.frames_topic, key=camera.encode(), value=value, headers=FRAME.headers(),
                         on_delivery=None if appended is None else _noting_ack(appended, seq))
        producer.poll(0)
    producer.flush(30)


def _noting_ack(appended: dict[int, float], seq: int):
    def on_delivery(error, _message) -> None:
        if error is None:
            appended[seq] = time.time() * 1000

    return on_delivery


def _drain(settings: Settings, expected: int, timeout_s: float) -> tuple[list[dict[str, float]], float]:
    """Reads detections until ``expected`` arrived; returns per-record timestamps (frame_seq, capture, read and the
    worker's timing header, ms since the epoch) and the last arrival (seconds since the epoch)."""
    consumer = Consumer(consumer_config(settings, f"bench-reader-{uuid.uuid4().hex[:8]}"))
    # Assigned, not subscribed: a group join (slow on some brokers) would delay the first reads and be
    # misread as pipeline latency.
    topic = settings.kafka.detections_topic
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    samples: list[dict[str, float]] = []
    last = time.time()
    deadline = time.monotonic() + timeout_s
    try:
        while len(samples) < expected and time.monotonic() < deadline:
            # Block for one record, then take what else has arrived: consume(n, timeout) alone would hold the
            # records until n arrived or the timeout passed, and that wait would count as latency.
            messages = consumer.consume(1, timeout=0.2)
            if messages:
                messages += consumer.consume(500, timeout=0)
            read = time.time() * 1000
            for message in messages:
                if message.error() is None:
                    headers = headers_dict(message.headers())
                    record = DETECTIONS.decode(message.value(), headers)
                    samples.append({**parse_timing(headers.get(TIMING_HEADER)), "seq": record["frame_seq"],
                                    "capture": record["capture_ts_ms"], "read": read})
                    last = time.time()
    finally:
        consumer.close()
    if len(samples) < expected:
        raise TimeoutError(f"only {len(samples)} of {expected} detections records arrived in {timeout_s:.0f} s")
    return samples, last


def _cameras_and_reader(settings: Settings, jpegs: list[bytes], paced_fps: float, timeout_s: float
                        ) -> tuple[list[dict[str, float]], float]:
    """The worker's neighbours, in a process of their own as in production (ingest and the counting app are other
    processes): publishes ``jpegs`` paced at ``paced_fps`` (none when 0: they were published before) from a thread
    while reading the detections; returns :func:`_drain`'s result with each frame's broker-append time added."""
    appended: dict[int, float] = {}
    if paced_fps:
        threading.Thread(target=_publish, args=(settings, jpegs, paced_fps, appended), daemon=True).start()
    samples, last = _drain(settings, len(jpegs), timeout_s)
    for sample in samples:
        if int(sample["seq"]) in appended:
            sample["appended"] = appended[int(sample["seq"])]
    return samples, last


@dataclass
class WorkerRun:
    samples: list[dict[str, float]]
    fps: float
    """frames from partition assignment to the last record read"""
    cpu_s: dict[str, float]
    """CPU seconds from the worker's start to the last record read: worker, neighbours, broker (if local)"""


def _neighbours_ready() -> int:
    """The neighbours' process id. Submitted first, so the child imports this module (to unpickle it) before the
    clock starts: done with the first timed call instead, the import spent the worker's CPU in its measurement."""
    return os.getpid()


def _run_worker(
    settings: Settings, detector: Detector, jpegs: list[bytes], paced_fps: float, broker: psutil.Process | None
) -> WorkerRun:
    """Runs a worker on ``jpegs``, per-frame timestamps and all. The publisher and reader run in a child process,
    so they do not take the worker's interpreter lock."""
    worker = InferenceWorker(settings, RouteTable(detector))
    thread = threading.Thread(target=worker.run, name="bench-worker", daemon=True)
    publishing_s = len(jpegs) / paced_fps if paced_fps else 0.0
    timeout_s = 60 + publishing_s + len(jpegs) / 5
    me = psutil.Process()
    with _dropping_topics(settings), \
            ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as neighbours:
        if not paced_fps:
            _publish(settings, jpegs)
        child = psutil.Process(neighbours.submit(_neighbours_ready).result())
        processes = {"worker": me, "neighbours": child, **({"broker": broker} if broker else {})}
        cpu_before = {name: cpu_seconds(process) for name, process in processes.items()}
        thread.start()
        if not worker.ready.wait(60):
            raise TimeoutError("the benchmark worker got no partitions within 60 s")
        started = time.time()
        try:
            samples, last = neighbours.submit(_cameras_and_reader, settings, jpegs, paced_fps, timeout_s).result()
            cpu_s = {name: cpu_seconds(process) - cpu_before[name] for name, process in processes.items()}
        except TimeoutError as exc:
            run = f"latency run at {paced_fps:.1f} frames/s" if paced_fps else "throughput run"
            raise TimeoutError(f"{run}, max batch {settings.inference.max_batch}: {exc}") from None
        finally:
            worker.stop()
            thread.join(30)
    return WorkerRun(samples, len(jpegs) / (last - started), cpu_s)


def _warmup_topic(settings: Settings) -> str:
    """The run's topic for the publisher's warm-up record (namespaced with the frames topic; nothing reads it)."""
    return f"{settings.kafka.frames_topic}-publisher-warmup"


@contextmanager
def _dropping_topics(settings: Settings) -> Iterator[None]:
    """Deletes the run's namespaced topics after it: the local broker keeps every topic in memory, and a broker
    holding hundreds of them spends more CPU per request beside the worker."""
    try:
        yield
    finally:
        drop_topics(settings, extra=[_warmup_topic(settings)])


def _namespace(base: Settings, max_batch: int) -> Settings:
    inference = base.inference.model_copy(update={"max_batch": max_batch})
    settings = base.model_copy(update={"inference": inference}).namespaced(f"bench{uuid.uuid4().hex[:6]}",
                                                                          partitions=4)
    create_topics(settings, extra={_warmup_topic(settings): 1})
    return settings


def bench_pipeline(settings: Settings, footage: Path, frames: int, batches: Sequence[int] = (8,),
                   loads: Sequence[float] = (0.8,), rounds: int = 3) -> PipelineFigures:
    """Starts the local stack unless it runs, then :func:`measure_pipeline`."""
    services = LocalStack(settings).up()
    broker_pid = next((svc.pid for svc in services if svc.name == "kafka" and svc.managed), None)
    return measure_pipeline(settings, footage, frames, batches, loads, rounds, broker_pid)


def measure_pipeline(settings: Settings, footage: Path, frames: int, batches: Sequence[int] = (8,),
                     loads: Sequence[float] = (0.8,), rounds: int = 3, broker_pid: int | None = None
                     ) -> PipelineFigures:
    """Throughput at each max batch size of ``batches`` (``rounds`` alternating in-process / broker pairs), then
    the latency budget at each share of capacity in ``loads`` with the largest batch size as the worker's max
    batch, on the running stack ``settings`` names. ``broker_pid``: the broker's process when it runs on this
    host, for its CPU time per frame."""
    broker = psutil.Process(broker_pid) if broker_pid else None
    max_batch = max(batches)
    detector = load_detector(settings, max_batch=max_batch)
    jpegs = _jpeg_frames(footage, frames)
    threads = settings.inference.decode_threads
    _in_process_fps(detector, jpegs[: max_batch * 2], max_batch, threads)  # warm caches like the worker's warm-up
    batch1_detect, jpeg_decode = _batch1_reference(detector, jpegs)
    base = settings.model_copy(update={"inference": settings.inference.model_copy(update={"metrics_port": 0})})
    figures = PipelineFigures(frames=frames, model=f"{detector.name}@{detector.version}", provider=detector.provider,
                              batch1_detect_ms=batch1_detect, jpeg_decode_ms=jpeg_decode)
    in_process: dict[int, float] = {}
    for batch in batches:
        alone_fps, through_fps, cpu_ms = [], [], []
        for _ in range(rounds):
            fps, alone_cpu_s = _in_process_fps(detector, jpegs, batch, threads)
            run = _run_worker(_namespace(base, batch), detector, jpegs, paced_fps=0, broker=broker)
            alone_fps.append(fps)
            through_fps.append(run.fps)
            cpu_ms.append({"in_process": alone_cpu_s, **run.cpu_s})
        in_process[batch] = float(np.median(alone_fps))
        ratios = [round(through / alone, 3) for alone, through in zip(alone_fps, through_fps)]
        per_frame = {name: round(float(np.median([cpu[name] for cpu in cpu_ms])) * 1000 / len(jpegs), 1)
                     for name in cpu_ms[0]}
        figures.throughput.append(ThroughputFigures(
            batch=batch, in_process_fps=round(in_process[batch], 1),
            pipeline_fps=round(float(np.median(through_fps)), 1), ratio=round(float(np.median(ratios)), 3),
            ratios=ratios, cpu_ms=CpuPerFrame(in_process=per_frame["in_process"], worker=per_frame["worker"],
                                              neighbours=per_frame["neighbours"],
                                              broker=per_frame.get("broker"))))
    for load in loads:
        paced_fps = load * in_process[max_batch]
        samples = _run_worker(_namespace(base, max_batch), detector, jpegs, paced_fps=paced_fps, broker=broker).samples
        sizes = [s["batch"] for s in samples if "batch" in s]
        figures.latency.append(LatencyFigures(
            load=load, max_batch=max_batch, paced_fps=round(paced_fps, 1), stages=stage_budget(samples),
            batch_mean=round(float(np.mean(sizes)), 2) if sizes else 0.0,
            batch_max=int(max(sizes)) if sizes else 0))
    return figures
