"""Letterbox preprocessing into a preallocated uint8 BGR batch, the normalisation the model graph applies to it, and
the inverse box mapping.

The host only letterboxes: colour order, scaling to the model's range and the NHWC -> NCHW layout run inside the model
graph (``models.serving_graph``), so a GPU receives a quarter of the bytes and the host does a third of the work.
``model_input`` is the same normalisation in numpy, for what feeds the unfused model (int8 calibration, tests).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from models.manifest import ModelManifest


@dataclass(frozen=True)
class LetterboxTransform:
    """Maps boxes between a source frame (``src_w`` x ``src_h``) and the letterboxed model input.

    Invariant: ``input = source * scale + (pad_x, pad_y)``; ``to_source`` is its exact inverse before clipping.
    """

    scale: float
    pad_x: int
    pad_y: int
    src_w: int
    src_h: int

    @classmethod
    def fit(cls, src_w: int, src_h: int, input_w: int, input_h: int) -> "LetterboxTransform":
        """Largest aspect-preserving scale that fits the input, with the image centred."""
        scale = min(input_w / src_w, input_h / src_h)
        new_w, new_h = cls._scaled_size(src_w, src_h, scale)
        return cls(scale, (input_w - new_w) // 2, (input_h - new_h) // 2, src_w, src_h)

    @staticmethod
    def _scaled_size(src_w: int, src_h: int, scale: float) -> tuple[int, int]:
        return max(1, round(src_w * scale)), max(1, round(src_h * scale))

    @property
    def scaled_size(self) -> tuple[int, int]:
        """(width, height) of the resized image inside the input canvas."""
        return self._scaled_size(self.src_w, self.src_h, self.scale)

    def _offset(self) -> np.ndarray:
        return np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y], dtype=np.float32)

    def to_input(self, xyxy: np.ndarray) -> np.ndarray:
        """(N, 4) source-frame boxes -> model-input pixels."""
        return (np.asarray(xyxy, dtype=np.float32) * np.float32(self.scale) + self._offset()).astype(np.float32)

    def to_source(self, xyxy: np.ndarray) -> np.ndarray:
        """(N, 4) model-input boxes -> source-frame pixels, clipped to [0, src_w] x [0, src_h]."""
        boxes = (np.asarray(xyxy, dtype=np.float32) - self._offset()) / np.float32(self.scale)
        np.clip(boxes[:, 0::2], 0, self.src_w, out=boxes[:, 0::2])
        np.clip(boxes[:, 1::2], 0, self.src_h, out=boxes[:, 1::2])
        return boxes


@dataclass(frozen=True)
class Normalisation:
    """How a model wants its letterboxed BGR uint8 canvas turned into its float NCHW input:
    ``input[c] = canvas[..., channel_order[c]] * gain[c] + bias[c]``."""

    channel_order: tuple[int, int, int]
    gain: np.ndarray
    bias: np.ndarray

    @classmethod
    def of(cls, manifest: ModelManifest) -> "Normalisation":
        std = np.asarray(manifest.std, dtype=np.float32)
        return cls(
            channel_order=(2, 1, 0) if manifest.color_order == "RGB" else (0, 1, 2),
            gain=(np.float32(manifest.scale) / std).astype(np.float32),
            bias=(-np.asarray(manifest.mean, dtype=np.float32) / std).astype(np.float32),
        )

    @property
    def has_bias(self) -> bool:
        return bool(np.any(self.bias != 0))


def model_input(canvases: np.ndarray, manifest: ModelManifest) -> np.ndarray:
    """[N, H, W, 3] BGR uint8 canvases -> the model's own [N, 3, H, W] float32 input (what the serving graph computes
    on the device)."""
    norm = Normalisation.of(manifest)
    planes = canvases[..., list(norm.channel_order)].transpose(0, 3, 1, 2).astype(np.float32)
    planes *= norm.gain.reshape(1, 3, 1, 1)
    if norm.has_bias:
        planes += norm.bias.reshape(1, 3, 1, 1)
    return planes


class BatchPreprocessor:
    """Letterboxes BGR uint8 frames into slots of one preallocated uint8 tensor [max_batch, H, W, 3].

    Each slot is its own canvas, so filling *different* indices from different threads is safe (cv2 and numpy
    release the GIL); filling the same index concurrently is not. ``batch(n)`` is a view: its contents change on the
    next ``fill``.
    """

    def __init__(self, manifest: ModelManifest, max_batch: int) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.max_batch = max_batch
        self.width = manifest.input_width
        self.height = manifest.input_height
        self._fill = manifest.letterbox_fill
        self._canvas = np.empty((max_batch, self.height, self.width, 3), dtype=np.uint8)

    def fill(self, index: int, image_bgr: np.ndarray) -> LetterboxTransform:
        """Letterbox ``image_bgr`` (H, W, 3) uint8 into slot ``index``; returns the mapping back to the frame."""
        if not 0 <= index < self.max_batch:
            raise IndexError(f"batch index {index} outside [0, {self.max_batch})")
        if image_bgr.dtype != np.uint8 or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
            raise ValueError(f"expected a BGR uint8 image (H, W, 3), got {image_bgr.dtype} {image_bgr.shape}")
        src_h, src_w = image_bgr.shape[:2]
        transform = LetterboxTransform.fit(src_w, src_h, self.width, self.height)
        new_w, new_h = transform.scaled_size
        x0, y0 = transform.pad_x, transform.pad_y
        canvas = self._canvas[index]
        canvas[:y0] = self._fill
        canvas[y0 + new_h :] = self._fill
        canvas[y0 : y0 + new_h, :x0] = self._fill
        canvas[y0 : y0 + new_h, x0 + new_w :] = self._fill
        inner = canvas[y0 : y0 + new_h, x0 : x0 + new_w]
        if (new_w, new_h) == (src_w, src_h):
            inner[...] = image_bgr
        else:
            cv2.resize(image_bgr, (new_w, new_h), dst=inner, interpolation=cv2.INTER_LINEAR)
        return transform

    def batch(self, n: int) -> np.ndarray:
        """View of the first ``n`` filled slots, shape [n, H, W, 3] uint8 BGR."""
        if not 1 <= n <= self.max_batch:
            raise ValueError(f"batch size {n} outside [1, {self.max_batch}]")
        return self._canvas[:n]


def synthetic_frame(width: int = 640, height: int = 480) -> np.ndarray:
    """Deterministic BGR uint8 noise frame for warm-ups and format checks (landscape, so letterboxing is exercised)."""
    return np.random.default_rng(0).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
