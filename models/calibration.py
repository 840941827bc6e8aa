"""Per-model box calibration: how much taller than its box a detected object really is, learnt from labels.

Some detectors draw boxes that do not fit the body. YOLOv3-tiny (COCO) draws small pedestrians from about the
shoulders to the knees, centred on the body: the bottom-centre of such a box sits at the knees, not at the
feet, so line crossings in the walking direction are timed late or early and zone membership is wrong. Large
(near) people get full-body boxes. The bias is a property of the model, and of the object's size *as the model
sees it* (pixels of the network input, after letterboxing), so a model version carries its calibration in its
manifest and it applies to any footage resolution.

The calibration scales each box's height about its centre by ``scale(h)``, where ``h`` is the box height in
network-input pixels and ``scale`` is piecewise linear through ``(heights[i], scales[i])``, constant beyond the
first and last knots. The scaled box is clipped to the frame: an object cut off by the frame edge is counted
where it leaves the picture. Only the counting anchors use the calibrated boxes; tracking and stored detections
keep the model's own boxes.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

PositiveFloat = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]


class BoxCalibration(BaseModel):
    """Height scale as a function of box height in network-input pixels.

    Invariants: ``heights`` is strictly increasing and as long as ``scales`` (at least one knot); every scale is
    positive; ``input_size`` is the (width, height) of the network input the heights refer to.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_size: tuple[Annotated[int, Field(gt=0)], Annotated[int, Field(gt=0)]]
    heights: tuple[PositiveFloat, ...] = Field(min_length=1)
    scales: tuple[PositiveFloat, ...] = Field(min_length=1)
    source: dict[str, Any] = Field(default_factory=dict, description="how it was learnt: labels, date, fit")

    @model_validator(mode="after")
    def _knots(self) -> "BoxCalibration":
        if len(self.heights) != len(self.scales):
            raise ValueError(f"heights ({len(self.heights)}) and scales ({len(self.scales)}) differ in length")
        if any(b <= a for a, b in zip(self.heights, self.heights[1:])):
            raise ValueError(f"heights must be strictly increasing, got {list(self.heights)}")
        return self

    def scale_of(self, heights_px: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
        """Height scale for boxes ``heights_px`` tall in a frame of ``frame_size`` (width, height) pixels."""
        width, height = frame_size
        letterbox = min(self.input_size[0] / width, self.input_size[1] / height)
        return np.interp(np.asarray(heights_px, np.float64) * letterbox, self.heights, self.scales)

    def apply(self, xyxy: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
        """(N, 4) float32 boxes with their heights scaled about their centres, clipped to the frame."""
        boxes = np.asarray(xyxy, np.float32).reshape(-1, 4)
        if len(boxes) == 0:
            return boxes.copy()
        half = (boxes[:, 3] - boxes[:, 1]) / 2
        centre = boxes[:, 1] + half
        half = half * self.scale_of(2 * half, frame_size).astype(np.float32)
        out = boxes.copy()
        out[:, 1] = np.maximum(centre - half, 0.0)
        out[:, 3] = np.minimum(centre + half, float(frame_size[1]))
        return out
