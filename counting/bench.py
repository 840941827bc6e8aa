"""Micro-benchmark of the counting core (tracker + one line + one zone) on synthetic walkers.

Run: ``python -m counting.bench [OBJECTS] [FRAMES]``.
"""

from __future__ import annotations

import logging
import sys
import time

import numpy as np

from counting.config import CameraConfig, LineConfig, ZoneConfig
from counting.engine import CameraCounter
from models.detections import Detections

logger = logging.getLogger(__name__)

_WIDTH, _HEIGHT = 768.0, 576.0
_BOX_W, _BOX_H = 30.0, 80.0


def synthetic_frames(objects: int, frames: int, seed: int = 0) -> list[Detections]:
    """``objects`` people walking left or right at 2-6 px/frame with 1 px box jitter; a walker leaving
    the frame re-enters at the opposite edge (as a new person)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, _WIDTH, objects)
    y = rng.uniform(_BOX_H, _HEIGHT, objects)
    vx = rng.uniform(2, 6, objects) * rng.choice([-1.0, 1.0], objects)
    vy = rng.uniform(-0.5, 0.5, objects)
    out = []
    for _ in range(frames):
        x = np.mod(x + vx, _WIDTH)
        y = np.clip(y + vy, _BOX_H, _HEIGHT)
        jitter = rng.normal(0, 1, (objects, 4))
        xyxy = np.stack([x - _BOX_W / 2, y - _BOX_H, x + _BOX_W / 2, y], axis=1) + jitter
        confidence = rng.uniform(0.55, 0.95, objects)
        out.append(Detections(xyxy, confidence, np.zeros(objects, np.int32)))
    return out


def bench_counting(objects: int = 20, frames: int = 1000) -> dict[str, float]:
    """Time ``CameraCounter.update`` per frame; frame generation is excluded."""
    config = CameraConfig(
        camera_id="bench",
        lines=[LineConfig(name="L1", start=(384, 0), end=(384, 576))],
        zones=[ZoneConfig(name="Z1", polygon=[(100, 100), (600, 100), (600, 500), (100, 500)])],
    )
    counter = CameraCounter(config, ["person"])
    timings = np.empty(frames)
    crossings = 0
    for seq, detections in enumerate(synthetic_frames(objects, frames)):
        started = time.perf_counter()
        result = counter.update(seq, seq * 40, detections)
        timings[seq] = time.perf_counter() - started
        assert result is not None  # seqs are strictly increasing
        crossings += len(result.crossings)
    ms = timings * 1000
    return {
        "objects": objects,
        "frames": frames,
        "ms_per_frame_mean": float(ms.mean()),
        "ms_per_frame_p50": float(np.percentile(ms, 50)),
        "ms_per_frame_p99": float(np.percentile(ms, 99)),
        "crossings": crossings,
    }


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    objects = int(argv[0]) if argv else 20
    frames = int(argv[1]) if len(argv) > 1 else 1000
    logger.info("%s", bench_counting(objects, frames))


if __name__ == "__main__":
    main(sys.argv[1:])
