"""ByteTrack-family multi-object tracker over ``Detections``, one instance per camera.

Per frame: predict every track (several steps when frames were skipped), then
  1. match high-confidence boxes to all confirmed tracks (tracked and lost) by IoU,
  2. match low-confidence boxes to the confirmed tracks still unmatched that were tracked last frame,
  3. match the remaining high boxes to tentative tracks,
each with ``scipy.optimize.linear_sum_assignment`` and never across classes. Overlap is *buffered* IoU
(C-BIoU, Yang et al. 2023): both boxes are widened by ``iou_buffer`` times their width and height on each
side before the IoU, so a small person moving more than its own width per frame (far away, low frame
rate, or a new track whose velocity is still unknown) still overlaps its prediction. Unmatched tracked tracks
become lost and are dropped after ``max_gap_frames`` frames without a match; unmatched tentative
tracks are dropped at once; unmatched high boxes at or above ``new_track_threshold`` start tentative
tracks, which get an id after ``min_hits`` consecutive matches. Ids are per tracker, monotonic from 1,
assigned in creation order, so the same input always yields the same ids. Every track remembers the
box it started with (``first_boxes``), so a counter can place a track where it was first seen even
though the id is only issued ``min_hits`` frames later.

Tracks are a struct of arrays (no per-track objects); state is plain JSON via ``to_state``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from counting import kalman
from counting.config import TrackerConfig
from counting.snapshot import renumber_classes
from foundation.errors import CamcountError
from models.detections import Detections

logger = logging.getLogger(__name__)

_TENTATIVE, _TRACKED, _LOST = 0, 1, 2
_STATE_VERSION = 2
_GATED_COST = 1e6


class TrackerStateError(CamcountError, ValueError):
    """A tracker snapshot cannot be restored; start the camera from an empty state instead."""

    code = "COUNT_001"
    detail = "snapshot-unreadable"


class Tracker:
    """Invariant: all track arrays have the same length T; ``track_id`` is -1 exactly for tentative tracks."""

    def __init__(self, config: TrackerConfig) -> None:
        self.config = config
        self._next_id = 1
        self._track_id = np.zeros(0, np.int64)
        self._class_id = np.zeros(0, np.int32)
        self._status = np.zeros(0, np.int8)
        self._hits = np.zeros(0, np.int32)
        self._gap = np.zeros(0, np.int32)
        self._mean = np.zeros((0, 8))
        self._covariance = np.zeros((0, 8, 8))
        self._first = np.zeros((0, 4))

    def alive_ids(self) -> np.ndarray:
        """Ids of confirmed tracks still kept (tracked or lost); counters forget every other id."""
        return self._track_id[self._status != _TENTATIVE]

    def end_tracks(self) -> None:
        """Drop every track (its source ended); ids go on increasing, so no later track reuses one."""
        self._keep(np.zeros(len(self._track_id), bool))

    def first_boxes(self, track_ids: np.ndarray) -> np.ndarray:
        """(N, 4) xyxy box with which each given track started (its first, tentative, detection).

        Every id must be alive (``alive_ids``); raises ValueError otherwise."""
        track_ids = np.asarray(track_ids, np.int64).reshape(-1)
        alive = np.flatnonzero(self._status != _TENTATIVE)
        order = alive[np.argsort(self._track_id[alive])]
        rows = np.searchsorted(self._track_id[order], track_ids)
        found = rows < len(order)
        found[found] = self._track_id[order[rows[found]]] == track_ids[found]
        if not found.all():
            raise ValueError(f"tracks {track_ids[~found].tolist()} are not alive")
        return self._first[order[rows]].copy()

    def update(self, detections: Detections, frame_gap: int = 1) -> Detections:
        """Track one frame ``frame_gap`` frames after the previous one; returns ``detections`` (same rows,
        same order) with ``tracker_id`` set, -1 for boxes not assigned to a confirmed track."""
        if frame_gap < 1:
            raise ValueError(f"frame_gap must be >= 1, got {frame_gap}: drop late or duplicate frames before tracking")
        cfg = self.config
        self._predict(frame_gap)

        confidence = detections.confidence
        det_class = detections.class_id
        det_boxes = detections.xyxy.astype(np.float64)
        track_boxes = kalman.cxcywh_to_xyxy(self._mean[:, :4])
        iou = _iou(_buffered(track_boxes, cfg.iou_buffer), _buffered(det_boxes, cfg.iou_buffer))
        iou[self._class_id[:, None] != det_class[None, :]] = 0.0

        high = np.flatnonzero(confidence >= cfg.high_threshold)
        low = np.flatnonzero((confidence >= cfg.low_threshold) & (confidence < cfg.high_threshold))
        confirmed = np.flatnonzero(self._status != _TENTATIVE)
        was_tracked = self._status == _TRACKED

        t1, d1 = _match(iou, confirmed, high, cfg.match_iou)
        rest_tracks = np.setdiff1d(confirmed, t1)
        rest_tracks = rest_tracks[was_tracked[rest_tracks]]
        t2, d2 = _match(iou, rest_tracks, low, cfg.low_match_iou)
        rest_high = np.setdiff1d(high, d1)
        t3, d3 = _match(iou, np.flatnonzero(self._status == _TENTATIVE), rest_high, cfg.match_iou)

        matched_tracks = np.concatenate([t1, t2, t3])
        matched_dets = np.concatenate([d1, d2, d3])
        self._correct(matched_tracks, xyxy_boxes=det_boxes[matched_dets])
        self._confirm_tentative()

        tracker_id = np.full(len(detections), -1, np.int64)
        tracker_id[matched_dets] = self._track_id[matched_tracks]

        unmatched = np.ones(len(self._status), bool)
        unmatched[matched_tracks] = False
        self._mark_missed(unmatched)

        new = np.setdiff1d(rest_high, d3)
        new = new[confidence[new] >= cfg.new_track_threshold]
        tracker_id[new] = self._start_tracks(det_boxes[new], det_class[new])
        return detections.with_tracker_ids(tracker_id)

    def _predict(self, frame_gap: int) -> None:
        if len(self._status) == 0:
            return
        # As ByteTrack: a track that was not matched last frame keeps its position velocity but stops
        # growing or shrinking, so a long occlusion cannot collapse or blow up its box.
        not_tracked = self._status != _TRACKED
        self._mean[not_tracked, 6:8] = 0.0
        # Any track unmatched for more than max_gap_frames is dropped anyway, so more steps change nothing.
        steps = min(frame_gap, self.config.max_gap_frames + 1)
        self._mean, self._covariance = kalman.predict(self._mean, self._covariance, steps)
        self._gap += frame_gap

    def _correct(self, tracks: np.ndarray, xyxy_boxes: np.ndarray) -> None:
        if len(tracks) == 0:
            return
        mean, covariance = kalman.update(
            self._mean[tracks], self._covariance[tracks], kalman.xyxy_to_cxcywh(xyxy_boxes)
        )
        self._mean[tracks] = mean
        self._covariance[tracks] = covariance
        self._status[tracks] = np.where(self._status[tracks] == _TENTATIVE, _TENTATIVE, _TRACKED)
        self._hits[tracks] += 1
        self._gap[tracks] = 0

    def _confirm_tentative(self) -> None:
        ready = np.flatnonzero((self._status == _TENTATIVE) & (self._hits >= self.config.min_hits))
        self._status[ready] = _TRACKED
        self._track_id[ready] = self._issue_ids(len(ready))

    def _issue_ids(self, count: int) -> np.ndarray:
        ids = np.arange(self._next_id, self._next_id + count, dtype=np.int64)
        self._next_id += count
        return ids

    def _mark_missed(self, unmatched: np.ndarray) -> None:
        self._status[unmatched & (self._status == _TRACKED)] = _LOST
        drop = unmatched & ((self._status == _TENTATIVE) | (self._gap > self.config.max_gap_frames))
        if drop.any():
            dropped = self._track_id[drop]
            logger.debug("dropping tracks %s", dropped[dropped >= 0].tolist())
            self._keep(~drop)

    def _keep(self, keep: np.ndarray) -> None:
        self._track_id = self._track_id[keep]
        self._class_id = self._class_id[keep]
        self._status = self._status[keep]
        self._hits = self._hits[keep]
        self._gap = self._gap[keep]
        self._mean = self._mean[keep]
        self._covariance = self._covariance[keep]
        self._first = self._first[keep]

    def _start_tracks(self, xyxy_boxes: np.ndarray, class_id: np.ndarray) -> np.ndarray:
        """Append tracks for new boxes; returns their ids (-1 while tentative)."""
        n = len(xyxy_boxes)
        mean, covariance = kalman.initiate(kalman.xyxy_to_cxcywh(xyxy_boxes))
        confirmed_now = self.config.min_hits <= 1
        track_id = self._issue_ids(n) if confirmed_now else np.full(n, -1, np.int64)
        self._track_id = np.concatenate([self._track_id, track_id])
        self._class_id = np.concatenate([self._class_id, class_id.astype(np.int32)])
        self._status = np.concatenate([self._status, np.full(n, _TRACKED if confirmed_now else _TENTATIVE, np.int8)])
        self._hits = np.concatenate([self._hits, np.ones(n, np.int32)])
        self._gap = np.concatenate([self._gap, np.zeros(n, np.int32)])
        self._mean = np.concatenate([self._mean, mean])
        self._covariance = np.concatenate([self._covariance, covariance])
        self._first = np.concatenate([self._first, xyxy_boxes])
        return track_id

    def to_state(self) -> dict[str, Any]:
        """Plain-JSON snapshot; floats survive JSON exactly, so a restored tracker continues identically."""
        return {
            "version": _STATE_VERSION,
            "next_id": self._next_id,
            "track_id": self._track_id.tolist(),
            "class_id": self._class_id.tolist(),
            "status": self._status.tolist(),
            "hits": self._hits.tolist(),
            "gap": self._gap.tolist(),
            "mean": self._mean.tolist(),
            "covariance": self._covariance.tolist(),
            "first": self._first.tolist(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], config: TrackerConfig) -> "Tracker":
        if state.get("version") != _STATE_VERSION:
            raise TrackerStateError(
                f"tracker state version {state.get('version')!r} is not {_STATE_VERSION}: discard the snapshot"
            )
        tracker = cls(config)
        try:
            tracker._next_id = int(state["next_id"])
            tracker._track_id = np.asarray(state["track_id"], np.int64).reshape(-1)
            tracker._class_id = np.asarray(state["class_id"], np.int32).reshape(-1)
            tracker._status = np.asarray(state["status"], np.int8).reshape(-1)
            tracker._hits = np.asarray(state["hits"], np.int32).reshape(-1)
            tracker._gap = np.asarray(state["gap"], np.int32).reshape(-1)
            tracker._mean = np.asarray(state["mean"], np.float64).reshape(-1, 8)
            tracker._covariance = np.asarray(state["covariance"], np.float64).reshape(-1, 8, 8)
            tracker._first = np.asarray(state["first"], np.float64).reshape(-1, 4)
        except (KeyError, TypeError, ValueError) as exc:
            raise TrackerStateError(f"tracker state is malformed ({exc}): discard the snapshot") from exc
        lengths = {len(a) for a in (tracker._track_id, tracker._class_id, tracker._status, tracker._hits,
                                    tracker._gap, tracker._mean, tracker._covariance, tracker._first)}
        if len(lengths) != 1:
            raise TrackerStateError("tracker state arrays differ in length: discard the snapshot")
        return tracker

    def renumber_classes(self, new_ids: np.ndarray) -> None:
        """Follow a change of the model's class list: a track of class id ``c`` becomes class ``new_ids[c]``.

        Raises TrackerStateError if a track's class is not in the new list (``new_ids[c] == -1``)."""
        self._class_id = renumber_classes(self._class_id, new_ids, TrackerStateError, "tracker")


def _buffered(xyxy: np.ndarray, buffer: float) -> np.ndarray:
    """Boxes widened by ``buffer`` times their own width (height) on the left and right (top and bottom)."""
    margin = buffer * (xyxy[:, 2:] - xyxy[:, :2])
    return np.concatenate([xyxy[:, :2] - margin, xyxy[:, 2:] + margin], axis=1)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of xyxy boxes."""
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def _match(iou: np.ndarray, tracks: np.ndarray, dets: np.ndarray, min_iou: float) -> tuple[np.ndarray, np.ndarray]:
    """Optimal one-to-one assignment of ``tracks`` rows to ``dets`` columns with IoU >= min_iou."""
    if len(tracks) == 0 or len(dets) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    sub = iou[np.ix_(tracks, dets)]
    # Pairs below the gate cost more than any set of valid pairs, so they never displace a valid match.
    cost = np.where(sub >= min_iou, 1.0 - sub, _GATED_COST)
    rows, cols = linear_sum_assignment(cost)
    ok = sub[rows, cols] >= min_iou
    return tracks[rows[ok]].astype(np.int64), dets[cols[ok]].astype(np.int64)
