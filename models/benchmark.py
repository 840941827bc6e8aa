"""Per-stage latency and throughput of a Detector: preprocessing, inference and postprocessing, per batch size."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from models.detector import Detector

logger = logging.getLogger(__name__)


def single_frame_ms(detector: Detector, frames: Sequence[np.ndarray], warmup: int = 2) -> float:
    """Median milliseconds of one single-frame ``detect`` over ``frames`` (the first ``warmup`` calls not counted):
    the batch-1 inference time latency budgets are measured against."""
    timings = []
    for frame in frames:
        started = time.perf_counter()
        detector.detect([frame])
        timings.append((time.perf_counter() - started) * 1000)
    return float(np.median(timings[warmup:]))


@dataclass(frozen=True)
class StageFigures:
    """Milliseconds per batch (p50, p95) and frames per second (batch size / mean batch time) of one stage."""

    p50_ms: float
    p95_ms: float
    frames_per_s: float

    @classmethod
    def of(cls, batch_ms: Sequence[float], batch_size: int) -> "StageFigures":
        samples = np.asarray(batch_ms, dtype=np.float64)
        mean = float(samples.mean())
        return cls(
            p50_ms=float(np.percentile(samples, 50)),
            p95_ms=float(np.percentile(samples, 95)),
            frames_per_s=batch_size * 1e3 / mean if mean > 0 else float("inf"),
        )


@dataclass(frozen=True)
class BatchFigures:
    """Figures of ``iterations`` timed ``detect`` calls on batches of ``batch_size`` frames.

    ``pre_post_over_infer`` = (p50 preprocess + p50 postprocess) / p50 inference: the share of the model's own time
    spent around it on the host.
    """

    batch_size: int
    iterations: int
    preprocess: StageFigures
    infer: StageFigures
    postprocess: StageFigures
    total: StageFigures

    @property
    def pre_post_over_infer(self) -> float:
        return (self.preprocess.p50_ms + self.postprocess.p50_ms) / self.infer.p50_ms

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {"pre_post_over_infer": round(self.pre_post_over_infer, 4)}


def bench_model(
    detector: Detector, frames: Sequence[np.ndarray], batch_sizes: Sequence[int], iterations: int
) -> list[BatchFigures]:
    """Time ``iterations`` ``detect`` calls per batch size, after one untimed call each (allocations, caches).

    Batches cycle through ``frames`` (BGR uint8) so consecutive calls see different images. Every batch size must be
    at most ``detector.max_batch`` (a larger one would be split into several model runs and time them together).
    """
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    if not frames:
        raise ValueError("benchmarking needs at least one frame")
    too_big = [b for b in batch_sizes if not 1 <= b <= detector.max_batch]
    if too_big:
        raise ValueError(
            f"batch sizes {too_big} outside [1, {detector.max_batch}]: load the detector with max_batch="
            f"{max(batch_sizes)} (a model with a static batch dimension only runs its own batch size)"
        )
    figures = []
    cursor = 0
    for batch_size in batch_sizes:
        stages: dict[str, list[float]] = {"pre": [], "infer": [], "post": []}
        for iteration in range(iterations + 1):
            batch = [frames[(cursor + i) % len(frames)] for i in range(batch_size)]
            cursor = (cursor + batch_size) % len(frames)
            detector.detect(batch)
            if iteration == 0:
                continue
            timings = detector.last_timings
            stages["pre"].append(timings.preprocess_ms)
            stages["infer"].append(timings.infer_ms)
            stages["post"].append(timings.postprocess_ms)
        totals = [sum(parts) for parts in zip(stages["pre"], stages["infer"], stages["post"])]
        result = BatchFigures(
            batch_size=batch_size,
            iterations=iterations,
            preprocess=StageFigures.of(stages["pre"], batch_size),
            infer=StageFigures.of(stages["infer"], batch_size),
            postprocess=StageFigures.of(stages["post"], batch_size),
            total=StageFigures.of(totals, batch_size),
        )
        logger.info("%s@%s batch %d: %.1f frames/s end to end", detector.name, detector.version, batch_size,
                    result.total.frames_per_s)
        figures.append(result)
    return figures
