"""The real default model's outputs on vtest.avi, as it is and degraded (darkened, blurred), computed once and
cached under ``<repo>/.camcount/cache/drift/`` keyed by the model's weights, the footage and the degradation.

Each frame goes through the ingestor's JPEG round trip, as the inference workers see it. Boxes are kept down to the
model manifest's confidence threshold; a higher threshold is applied afterwards by :meth:`FootageOutputs.at`
("the same model at a much higher confidence threshold" needs no second model run).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from foundation.settings import Settings
from tests.pipeline import REPO, footage_path

CACHE_DIR = REPO / ".camcount" / "cache" / "drift"


def darken(image: np.ndarray) -> np.ndarray:
    """Dusk, or a lens half covered: a quarter of the light."""
    return (image.astype(np.float32) * 0.25).astype(np.uint8)


def blur(image: np.ndarray) -> np.ndarray:
    """A lens out of focus (or fogged): Gaussian blur, sigma 4 px on a 768x576 frame."""
    return cv2.GaussianBlur(image, (0, 0), 4.0)


DEGRADATIONS: dict[str, Callable[[np.ndarray], np.ndarray] | None] = {"none": None, "dark": darken, "blur": blur}


@dataclass(frozen=True)
class FootageOutputs:
    """Every kept box of every frame: ``frame`` (0-based index), ``confidence``, ``class_id``, ``area_ratio``."""

    frames: int
    frame: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    area_ratio: np.ndarray
    model: str
    seconds: float

    def at(self, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """(detections per frame, mean confidence per frame: 0 for a frame without boxes) with only the boxes at
        or above ``threshold``, as ``inference_log`` records them."""
        kept = self.confidence >= threshold
        counts = np.bincount(self.frame[kept], minlength=self.frames)
        sums = np.bincount(self.frame[kept], weights=self.confidence[kept], minlength=self.frames)
        return counts.astype(np.int64), np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)

    def boxes_of(self, frames: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """(area ratio, class id) of every box at or above ``threshold`` of ``frames`` (indices, repeats allowed),
        frame by frame in that order: what ``inference_log``'s per-box columns hold for them."""
        kept = np.flatnonzero(self.confidence >= threshold)
        kept = kept[np.argsort(self.frame[kept], kind="stable")]
        bounds = np.searchsorted(self.frame[kept], np.arange(self.frames + 1))
        starts, lengths = bounds[frames], bounds[frames + 1] - bounds[frames]
        offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
        chosen = kept[offsets]
        return self.area_ratio[chosen], self.class_id[chosen]


def footage_outputs(settings: Settings, degradation: str = "none", max_frames: int | None = None) -> FootageOutputs:
    """The production model's outputs on vtest.avi (first ``max_frames`` frames), degraded as named."""
    from models.loading import load_detector
    from producers.encoding import jpeg_round_trip
    from producers.sources import FrameSource

    detector = load_detector(settings, max_batch=8)
    path = footage_path()
    key = hashlib.sha256(f"{detector.manifest.sha256}|{path.name}|{path.stat().st_size}|{degradation}|"
                         f"{max_frames}|{detector.manifest.confidence_threshold}".encode()).hexdigest()[:16]
    cache = CACHE_DIR / f"vtest-{degradation}-{key}.npz"
    model = f"{detector.name}@{detector.version}"
    if cache.is_file():
        data = np.load(cache)
        return FootageOutputs(int(data["frames"]), data["frame"], data["confidence"], data["class_id"],
                              data["area_ratio"], model, float(data["seconds"]))
    transform = DEGRADATIONS[degradation]
    started = time.monotonic()
    frame_ids, confidences, class_ids, areas = [], [], [], []
    frames = 0
    batch: list[np.ndarray] = []

    def run(batch: list[np.ndarray], first: int) -> None:
        for offset, (image, found) in enumerate(zip(batch, detector.detect(batch))):
            height, width = image.shape[:2]
            xyxy = found.xyxy
            frame_ids.append(np.full(len(found), first + offset, np.int64))
            confidences.append(found.confidence.astype(np.float64))
            class_ids.append(found.class_id.astype(np.int64))
            areas.append((xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1]) / float(width * height))

    for source_frame in FrameSource(str(path)).frames():
        if max_frames is not None and frames >= max_frames:
            break
        image = source_frame.image if transform is None else transform(source_frame.image)
        batch.append(jpeg_round_trip(image))
        frames += 1
        if len(batch) == 8:
            run(batch, frames - len(batch))
            batch = []
    if batch:
        run(batch, frames - len(batch))
    seconds = time.monotonic() - started
    outputs = FootageOutputs(frames, np.concatenate(frame_ids), np.concatenate(confidences),
                             np.concatenate(class_ids), np.concatenate(areas).astype(np.float64), model, seconds)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    partial = cache.with_suffix(".tmp.npz")
    np.savez(partial, frames=frames, frame=outputs.frame, confidence=outputs.confidence, class_id=outputs.class_id,
             area_ratio=outputs.area_ratio, seconds=seconds)
    partial.replace(cache)
    return outputs


def production_settings() -> Settings:
    """Settings naming the repository's model registry, with the default model in it (as ``make install`` and
    the ``model_registry`` fixture leave it)."""
    from models.default_model import import_default_model

    settings = Settings(home=REPO / ".camcount")
    import_default_model(settings)
    return settings


def stream_frames(outputs: FootageOutputs, frames: int, fps: float, rng: np.random.Generator,
                  block_s: float = 5.0) -> np.ndarray:
    """Indices into the clip of ``frames`` frames of a camera that watches the clip's scene at ``fps`` (the clip runs
    at 10 fps): consecutive ``block_s`` stretches of the clip, each starting at a random moment (circularly).

    A block bootstrap: inside a block the frames are as correlated as a real camera's (the same people walk
    through); the blocks are independent draws of the scene. It assumes a stationary scene, the null hypothesis of
    "nothing changed in the camera or the model".
    """
    stride = max(int(round(10 / fps)), 1)
    block = max(int(round(block_s * fps)), 1)
    starts = rng.integers(0, outputs.frames, size=(frames + block - 1) // block)
    return ((starts[:, None] + stride * np.arange(block)[None, :]) % outputs.frames).reshape(-1)[:frames]
