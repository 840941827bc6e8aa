"""Box agreement between two detectors' outputs on the same frames (pure numpy).

Used to compare an int8 model with its fp32 parent and a shadow candidate with its control.
"""

from __future__ import annotations

import numpy as np

from models.detections import Detections

MATCH_IOU = 0.5


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4) x (M, 4) xyxy boxes -> (N, M) intersection over union (0 where both boxes are empty)."""
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(br - tl, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match_detections(predicted: Detections, truth: Detections, iou_threshold: float = MATCH_IOU) -> np.ndarray:
    """Boolean per predicted box: matched a so-far-unmatched truth box of its class with IoU >= threshold.

    Predictions claim truths greedily in descending confidence; each takes its highest-IoU free candidate.
    """
    matched = np.zeros(len(predicted), dtype=bool)
    if len(predicted) == 0 or len(truth) == 0:
        return matched
    iou = box_iou(predicted.xyxy, truth.xyxy)
    iou[predicted.class_id[:, None] != truth.class_id[None, :]] = -1.0
    free = np.ones(len(truth), dtype=bool)
    for index in np.argsort(-predicted.confidence, kind="stable"):
        candidates = np.where(free, iou[index], -1.0)
        best = int(candidates.argmax())
        if candidates[best] >= iou_threshold:
            matched[index] = True
            free[best] = False
    return matched


def average_precision(confidence: np.ndarray, matched: np.ndarray, truths: int) -> float:
    """All-point interpolated AP of predictions (confidence, matched flag) against ``truths`` ground-truth boxes."""
    if truths == 0:
        raise ValueError("average precision needs at least one ground-truth box")
    order = np.argsort(-confidence, kind="stable")
    tp = np.cumsum(matched[order])
    precision = tp / np.arange(1, len(order) + 1)
    recall = tp / truths
    # Precision envelope: best precision at any recall >= r; AP sums it over each recall step.
    envelope = np.maximum.accumulate(precision[::-1])[::-1] if len(order) else precision
    steps = np.diff(np.concatenate([[0.0], recall]))
    return float(np.sum(steps * envelope))
