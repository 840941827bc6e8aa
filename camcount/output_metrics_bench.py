"""``camcount bench output-metrics``: what the worker's output-distribution metrics (detections per frame,
confidence and box area by class: ``stream_apps.inference.metrics.OutputDistribution``) cost on the hot path, as
worker throughput in frames/s with them on and off.

One process, one stack: for each model, ``rounds`` rounds of two drains each, one with the metrics on and one with
them off (``InferenceMetrics(output_distribution=False)``, injected through the worker's ``metrics`` parameter),
the order alternating from round to round so a drift of the machine's load does not favour one side. A drain
publishes ``frames`` frames to a fresh namespaced topic set and times an ``InferenceWorker`` (in a thread, as
``camcount bench ceiling`` runs it) from its first fetch to the last detections record read back: frames/s of
wall time, and frames per CPU-second of this process (the worker, its librdkafka threads and the reader; the
broker is another process), which other processes' load disturbs far less. The figures are the medians over
rounds of each round's ratio (on / off): the machine's load changes between rounds more than within one.

Models:

- a near-zero-cost ONNX graph (``models.tiny_graphs.write_tiled_model``) that outputs ``boxes`` non-overlapping boxes
  of three classes for every frame whatever its pixels, so the worker's own path, not 50 ms of inference, sets the
  rate and the metrics' share of it is as large as it gets;
- the real production model (``model.reference``), where inference dominates.

Beside the drains, the metrics' cost per frame is timed directly (``OutputDistribution.observe`` on the detections
each model gives for the footage, batch by batch as the worker calls it): the worker-level ratio is noisy on a
loaded machine, this one is not, and cost per frame x frames/s is the share of a core it takes.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from confluent_kafka import Message
from prometheus_client import CollectorRegistry

from camcount.ceiling_bench import cpu_model, drop_topics, footage_jpegs, publish_frames, read_detections
from camcount.stack import LocalStack
from foundation.provision import create_topics
from foundation.settings import Settings
from models.detector import Detector
from models.loading import load_detector
from models.registry import ModelRegistry
from models.runtime import CPU
from models.tiny_graphs import write_tiled_model
from stream_apps.inference.metrics import InferenceMetrics, OutputDistribution
from stream_apps.inference.routing import RouteTable
from stream_apps.inference.worker import InferenceWorker

BOXES_MODEL_NAME = "boxes-detector"
BOXES_MODEL_INPUT = 64
DISTINCT_FRAMES = 100
OBSERVE_CALLS = 2000
"""Batches observed per direct timing of ``OutputDistribution.observe``."""


@dataclass
class ModelCost:
    model: str
    frames: int
    """Frames per drain."""
    batch: int
    boxes_per_frame: float
    """Mean boxes the model keeps per frame of the footage."""
    fps_on: list[float] = field(default_factory=list)
    """Per round: frames/s with the output-distribution metrics on."""
    fps_off: list[float] = field(default_factory=list)
    """Per round: frames/s with them off."""
    cpu_fps_on: list[float] = field(default_factory=list)
    """Per round: frames per CPU-second of this process with the metrics on."""
    cpu_fps_off: list[float] = field(default_factory=list)
    observe_us_per_frame: float = 0.0
    """``OutputDistribution.observe`` timed alone, per frame, in batches of ``batch``."""

    @property
    def ratios(self) -> list[float]:
        return [on / off for on, off in zip(self.fps_on, self.fps_off)]

    @property
    def median_ratio(self) -> float:
        """Median over rounds of frames/s on / frames/s off (1.0: free; 0.98: 2 % slower)."""
        return statistics.median(self.ratios)

    @property
    def cpu_ratios(self) -> list[float]:
        return [on / off for on, off in zip(self.cpu_fps_on, self.cpu_fps_off)]

    @property
    def median_cpu_ratio(self) -> float:
        """Median over rounds of frames per CPU-second on / off."""
        return statistics.median(self.cpu_ratios)

    @property
    def direct_share(self) -> float:
        """The observe time per frame as a share of a frame's time at the off rate."""
        return self.observe_us_per_frame * 1e-6 * statistics.median(self.fps_off)

    def as_dict(self) -> dict:
        return {**asdict(self), "ratios": [round(r, 4) for r in self.ratios],
                "median_ratio": round(self.median_ratio, 4), "cpu_ratios": [round(r, 4) for r in self.cpu_ratios],
                "median_cpu_ratio": round(self.median_cpu_ratio, 4), "direct_share": round(self.direct_share, 5)}


@dataclass
class OutputMetricsFigures:
    rounds: int
    cpu: str
    models: list[ModelCost]

    def as_dict(self) -> dict:
        return {"rounds": self.rounds, "cpu": self.cpu, "models": [m.as_dict() for m in self.models]}


class _TimedWorker(InferenceWorker):
    """The deployed worker, noting the time of its first non-empty fetch (the hook ``camcount bench ceiling``
    uses too; ``first_fetch`` stays None if the worker no longer calls ``_start_decoding``)."""

    def __init__(self, settings: Settings, routes: RouteTable, metrics: InferenceMetrics) -> None:
        super().__init__(settings, routes, metrics)
        self.first_fetch: float | None = None
        self.first_fetch_cpu = 0.0

    def _start_decoding(self, messages: list[Message]):  # returns what InferenceWorker._start_decoding does
        if self.first_fetch is None:
            self.first_fetch, self.first_fetch_cpu = time.perf_counter(), time.process_time()
        return super()._start_decoding(messages)


def drain(settings: Settings, detector: Detector, jpegs: list[bytes], frames: int,
          output_metrics: bool) -> tuple[float, float]:
    """(frames/s, frames per CPU-second) of one worker draining ``frames`` frames, the output-distribution metrics
    on or off."""
    drained = settings.namespaced(f"outm{uuid.uuid4().hex[:6]}")
    create_topics(drained)
    try:
        height, width = cv2.imdecode(np.frombuffer(jpegs[0], np.uint8), cv2.IMREAD_COLOR).shape[:2]
        publish_frames(drained, jpegs, frames, (width, height))
        metrics = InferenceMetrics(CollectorRegistry(), output_distribution=output_metrics)
        worker = _TimedWorker(drained, RouteTable(detector), metrics)
        thread = threading.Thread(target=worker.run, name="output-metrics-worker", daemon=True)
        thread.start()
        if not worker.ready.wait(60):
            raise TimeoutError("the benchmark worker got no partitions within 60 s")
        _, last = read_detections(drained, frames, 120 + frames / 5, thread.is_alive)
        cpu = time.process_time()
        worker.stop()
        thread.join(30)
        if worker.first_fetch is None:
            raise RuntimeError("InferenceWorker no longer calls _start_decoding: update "
                               "camcount/output_metrics_bench.py")
        return frames / (last - worker.first_fetch), frames / (cpu - worker.first_fetch_cpu)
    finally:
        drop_topics(drained)


def boxes_model_output(boxes: int, classes: int = 3) -> np.ndarray:
    """[1, boxes, 5 + classes] yolov5 rows: ``boxes`` small boxes on a grid (none overlap, so NMS keeps them
    all), score 0.9, classes 0, 1, 2 in turn."""
    side = int(np.ceil(np.sqrt(boxes)))
    cell = BOXES_MODEL_INPUT / side
    rows = np.zeros((1, boxes, 5 + classes), np.float32)
    for i in range(boxes):
        row, column = divmod(i, side)
        rows[0, i, :5] = ((column + 0.5) * cell, (row + 0.5) * cell, cell / 2, cell / 2, 0.9)
        rows[0, i, 5 + i % classes] = 1.0
    return rows


def register_boxes_model(registry: ModelRegistry, work_dir: Path, boxes: int) -> str:
    path = write_tiled_model(work_dir / "boxes.onnx", boxes_model_output(boxes), (BOXES_MODEL_INPUT,) * 2,
                             name=BOXES_MODEL_NAME)
    manifest = registry.register(path, name=BOXES_MODEL_NAME, version="1.0.0", format="yolov5",
                                 input_width=BOXES_MODEL_INPUT, input_height=BOXES_MODEL_INPUT,
                                 class_names=["person", "car", "truck"],
                                 source={"kind": "camcount.output_metrics_bench", "boxes": boxes})
    return f"{manifest.name}@{manifest.version}"


def observe_cost(detector: Detector, images: list[np.ndarray], batch: int) -> tuple[float, float]:
    """(microseconds per frame of ``OutputDistribution.observe`` in batches of ``batch``, mean boxes per frame) on
    the detections ``detector`` gives for ``images``."""
    found = []
    for start in range(0, len(images), batch):
        found += detector.detect(images[start:start + batch])
    areas = [image.shape[0] * image.shape[1] for image in images]
    outputs = OutputDistribution(CollectorRegistry())
    batches = [(found[i:i + batch], areas[i:i + batch]) for i in range(0, len(found), batch)]
    started = time.perf_counter()
    observed = 0
    for call in range(OBSERVE_CALLS):
        frames, frame_areas = batches[call % len(batches)]
        outputs.observe(detector, "", frames, frame_areas)
        observed += len(frames)
    return (time.perf_counter() - started) / observed * 1e6, float(np.mean([len(d) for d in found]))


def measure(settings: Settings, detector: Detector, jpegs: list[bytes], images: list[np.ndarray], frames: int,
            batch: int, rounds: int, progress) -> ModelCost:
    cost_us, boxes = observe_cost(detector, images, batch)
    cost = ModelCost(f"{detector.name}@{detector.version}", frames, batch, round(boxes, 2),
                     observe_us_per_frame=round(cost_us, 2))
    drain(settings, detector, jpegs, min(frames, 200), True)  # warm-up: broker, caches, the model's first runs
    for number in range(rounds):
        order = (True, False) if number % 2 == 0 else (False, True)
        rates = {on: drain(settings, detector, jpegs, frames, on) for on in order}
        cost.fps_on.append(round(rates[True][0], 1))
        cost.fps_off.append(round(rates[False][0], 1))
        cost.cpu_fps_on.append(round(rates[True][1], 1))
        cost.cpu_fps_off.append(round(rates[False][1], 1))
        progress(f"{cost.model} round {number + 1}/{rounds}: on {rates[True][0]:.1f} frames/s, off "
                 f"{rates[False][0]:.1f} frames/s, ratio {cost.ratios[-1]:.4f} (per CPU-second "
                 f"{cost.cpu_ratios[-1]:.4f})")
    return cost


def bench_output_metrics(settings: Settings, footage: Path, frames: int = 4000, real_frames: int = 240,
                         batch: int = 32, real_batch: int = 8, boxes: int = 10, rounds: int = 7,
                         width: int | None = 384, real_model: bool = True,
                         progress=lambda line: None) -> OutputMetricsFigures:
    """Measure (see the module docstring) on the stack ``settings`` name (started if local and down)."""
    LocalStack(settings).up()
    inference = settings.inference.model_copy(update={"metrics_port": 0})
    base = settings.model_copy(update={"inference": inference,
                                       "kafka": settings.kafka.model_copy(update={"partitions": 4})})
    models: list[ModelCost] = []
    with tempfile.TemporaryDirectory(prefix="camcount-output-metrics-") as scratch:
        registry = ModelRegistry(Path(scratch) / "registry")
        reference = register_boxes_model(registry, Path(scratch), boxes)
        tiny = Detector.from_model(registry.resolve(reference), providers=[CPU], max_batch=batch)
        jpegs, images = footage_jpegs(footage, DISTINCT_FRAMES, width)
        tiny_settings = base.model_copy(update={"inference": inference.model_copy(update={"max_batch": batch})})
        models.append(measure(tiny_settings, tiny, jpegs, images, frames, batch, rounds, progress))
    if real_model:
        detector = load_detector(settings, max_batch=real_batch)
        jpegs, images = footage_jpegs(footage, DISTINCT_FRAMES, None)
        real_settings = base.model_copy(update={"inference": inference.model_copy(update={"max_batch": real_batch})})
        models.append(measure(real_settings, detector, jpegs, images, real_frames, real_batch, max(rounds // 2, 3),
                              progress))
    return OutputMetricsFigures(rounds, cpu_model(), models)


def render(figures: OutputMetricsFigures) -> str:
    lines = [f"output-distribution metrics on vs off, interleaved rounds; {figures.cpu}"]
    for m in figures.models:
        lines.append(f"  {m.model}: {m.frames} frames per drain, batch {m.batch}, {m.boxes_per_frame} boxes per "
                     f"frame, {len(m.ratios)} rounds")
        lines.append(f"    frames/s on : {', '.join(f'{v:.1f}' for v in m.fps_on)}")
        lines.append(f"    frames/s off: {', '.join(f'{v:.1f}' for v in m.fps_off)}")
        lines.append(f"    ratio on/off per round: {', '.join(f'{r:.4f}' for r in m.ratios)}; median "
                     f"{m.median_ratio:.4f} ({(m.median_ratio - 1) * 100:+.2f} % frames/s with the metrics)")
        lines.append(f"    frames per CPU-second on/off per round: {', '.join(f'{r:.4f}' for r in m.cpu_ratios)}; "
                     f"median {m.median_cpu_ratio:.4f}")
        lines.append(f"    observe alone: {m.observe_us_per_frame:.2f} us per frame = {m.direct_share * 100:.3f} % "
                     f"of a frame's time at the off rate")
    return "\n".join(lines)
