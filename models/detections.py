"""Detections as a struct of numpy arrays (one row per box), never per-box Python objects."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Detections:
    """Boxes of one frame in original-frame pixel coordinates.

    Invariant: every array has the same length N; ``xyxy`` is float32 (N, 4) with x1 <= x2, y1 <= y2;
    ``confidence`` float32 (N,); ``class_id`` int32 (N,); ``tracker_id`` int64 (N,), -1 where untracked.
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    tracker_id: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        object.__setattr__(self, "xyxy", np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4))
        object.__setattr__(self, "confidence", np.asarray(self.confidence, dtype=np.float32).reshape(-1))
        object.__setattr__(self, "class_id", np.asarray(self.class_id, dtype=np.int32).reshape(-1))
        if self.tracker_id is None:
            object.__setattr__(self, "tracker_id", np.full(len(self.xyxy), -1, dtype=np.int64))
        else:
            object.__setattr__(self, "tracker_id", np.asarray(self.tracker_id, dtype=np.int64).reshape(-1))
        n = len(self.xyxy)
        if not (len(self.confidence) == len(self.class_id) == len(self.tracker_id) == n):
            raise ValueError(
                f"Detections arrays differ in length: xyxy={n}, confidence={len(self.confidence)}, "
                f"class_id={len(self.class_id)}, tracker_id={len(self.tracker_id)}"
            )

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32))

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: np.ndarray | slice) -> "Detections":
        return Detections(self.xyxy[index], self.confidence[index], self.class_id[index], self.tracker_id[index])

    def with_tracker_ids(self, tracker_id: np.ndarray) -> "Detections":
        return Detections(self.xyxy, self.confidence, self.class_id, tracker_id)

    def anchors(self, anchor: str = "bottom_center") -> np.ndarray:
        """(N, 2) anchor points: ``bottom_center`` (default), ``center`` or ``top_center``."""
        x = (self.xyxy[:, 0] + self.xyxy[:, 2]) / 2
        if anchor == "bottom_center":
            y = self.xyxy[:, 3]
        elif anchor == "center":
            y = (self.xyxy[:, 1] + self.xyxy[:, 3]) / 2
        elif anchor == "top_center":
            y = self.xyxy[:, 1]
        else:
            raise ValueError(f"unknown anchor {anchor!r}: use bottom_center, center or top_center")
        return np.stack([x, y], axis=1)
