"""Inference as the API serves it, whatever the protocol: images in, per-image detections out, through the result
cache and the model version's micro-batcher. The REST routes and the Open Inference Protocol routes both call
:func:`infer_images`.

Detections are JSON objects ``{"class", "classId", "confidence", "bbox"}``; ``bbox`` is ``[x1, y1, x2, y2]`` in
pixels of the source image as sent (origin top left, x to the right, y down; x1 <= x2, y1 <= y2), the same
coordinates the offline detector (``models.Detector``) reports.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.errors import RequestTimeout, UnsupportedOutputFormat
from api.services import ApiServices
from models.detections import Detections
from models.detector import DetectParams
from models.images import ImageRejected, decode_image
from models.postprocess import DEFAULT_MAX_DETECTIONS
from models.registry import RegisteredModel
from sinks.result_cache import image_digest, options_digest

OUTPUT_FORMATS = ("json",)
MAX_DETECTIONS_LIMIT = 1000


class InferenceOptions(BaseModel):
    """Per-request options; an unknown one is refused (INF_001 invalid-request), never ignored."""

    model_config = ConfigDict(extra="forbid")

    confidenceThreshold: float | None = Field(  # noqa: N815 - the API's JSON names
        None, ge=0.0, le=1.0, description="keep boxes scoring above this (default: the model version's manifest)")
    nmsThreshold: float | None = Field(  # noqa: N815
        None, ge=0.0, le=1.0, description="IoU above which NMS drops the weaker of two boxes of one class "
        "(default: the manifest's)")
    maxDetections: int = Field(  # noqa: N815
        DEFAULT_MAX_DETECTIONS, ge=1, le=MAX_DETECTIONS_LIMIT, description="most boxes per image, best first")
    outputFormat: str = Field(  # noqa: N815
        "json", description="only `json` is produced; anything else is refused (INF_001 unsupported-output-format)")

    @field_validator("outputFormat")
    @classmethod
    def _only_json(cls, value: str) -> str:
        if value not in OUTPUT_FORMATS:
            raise UnsupportedOutputFormat(f"outputFormat {value[:40]!r} is not supported",
                                          remedy=f"use one of: {', '.join(OUTPUT_FORMATS)}")
        return value

    def detect_params(self) -> DetectParams:
        return DetectParams(self.confidenceThreshold, self.nmsThreshold, self.maxDetections)

    def cache_fields(self) -> dict[str, Any]:
        """What the result depends on, for the cache key (outputFormat does not change the result)."""
        return {"conf": self.confidenceThreshold, "iou": self.nmsThreshold, "max": self.maxDetections}


@dataclass(frozen=True)
class ImageAnswer:
    """One image's result: its detections (JSON objects, see the module docstring), its size, and whether it came
    from the result cache."""

    detections: list[dict[str, Any]]
    width: int
    height: int
    cached: bool


EncodedOrPixels = bytes | np.ndarray
"""An encoded JPEG/PNG, or a decoded BGR uint8 (H, W, 3) picture (Open Inference Protocol UINT8 tensors)."""


def detections_json(found: Detections, class_names: Sequence[str]) -> list[dict[str, Any]]:
    return [
        {"class": class_names[c] if 0 <= c < len(class_names) else str(c), "classId": int(c),
         "confidence": float(score), "bbox": [float(v) for v in box]}
        for box, score, c in zip(found.xyxy, found.confidence, found.class_id)
    ]


def pixels_digest(image: np.ndarray) -> str:
    digest = hashlib.sha256(f"{image.shape}{image.dtype}".encode())
    digest.update(np.ascontiguousarray(image).data)
    return digest.hexdigest()


async def _decode(index: int, data: EncodedOrPixels, max_pixels: int, many: bool) -> np.ndarray:
    if isinstance(data, np.ndarray):
        return data
    try:
        return await asyncio.to_thread(decode_image, data, max_pixels, True, True)
    except ImageRejected as exc:
        if not many:
            raise
        raise type(exc)(f"images[{index}]: {exc}", remedy=exc.remedy) from exc


async def infer_images(services: ApiServices, model: RegisteredModel, images: Sequence[EncodedOrPixels],
                       options: InferenceOptions, timeout_s: float | None = None) -> list[ImageAnswer]:
    """One answer per image, in order: from the cache where it holds the same (version, image, options), else
    from the model version's batcher. Raises the image's ImageRejected (a batch's message names the index),
    ModelError when the version cannot load, RequestTimeout after ``timeout_s`` (default and upper bound:
    ``api.request_timeout_s``), model loading included."""
    started = time.perf_counter()
    limit = services.settings.api.request_timeout_s
    timeout_s = limit if timeout_s is None else min(timeout_s, limit)
    deadline = started + timeout_s
    try:
        served = await asyncio.wait_for(services.models.get(model), timeout_s)
    except TimeoutError:
        raise RequestTimeout(f"{model.manifest.name}@{model.manifest.version} is still loading after {timeout_s:g} s",
                             remedy="retry shortly; the load goes on") from None
    assert served.batcher is not None
    name, version = served.name, served.version
    cache = services.cache
    options_hash = options_digest(options.cache_fields())
    keys = [cache.key(name, version, pixels_digest(i) if isinstance(i, np.ndarray) else image_digest(i),
                      options_hash) for i in images] if cache is not None else []
    cached = await cache.get_many(keys) if cache is not None else [None] * len(images)
    missing = [index for index, hit in enumerate(cached) if hit is None]
    many = len(images) > 1
    max_pixels = services.settings.api.max_image_pixels
    decoded = await asyncio.gather(*(_decode(i, images[i], max_pixels, many) for i in missing))
    params = options.detect_params()
    remaining = deadline - time.perf_counter()
    if remaining <= 0:
        raise RequestTimeout(f"{name}@{version}: no time left for inference after decoding",
                             remedy="raise api.request_timeout_s")
    found = await asyncio.gather(*(served.batcher.detect(image, params, remaining) for image in decoded))
    answers: list[ImageAnswer | None] = [
        None if hit is None else ImageAnswer(hit["detections"], hit["width"], hit["height"], cached=True)
        for hit in cached]
    class_names = served.detector.manifest.class_names if served.detector is not None else []
    stores = []
    for index, image, detections in zip(missing, decoded, found, strict=True):
        height, width = image.shape[:2]
        answer = ImageAnswer(detections_json(detections, class_names), width, height, cached=False)
        answers[index] = answer
        if cache is not None:
            stores.append(cache.put(keys[index], {"detections": answer.detections, "width": width,
                                                  "height": height}))
    if stores:
        await asyncio.gather(*stores)
    elapsed_ms = (time.perf_counter() - started) * 1000
    for _ in images:
        served.stats.record(elapsed_ms)
    metrics = services.metrics
    if missing:
        metrics.images.labels(name, version, "model").inc(len(missing))
    if len(images) > len(missing):
        metrics.images.labels(name, version, "cache").inc(len(images) - len(missing))
    return [answer for answer in answers if answer is not None]
