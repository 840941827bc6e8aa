"""Line crossing counter for one counting segment, vectorised over tracks.

Rules (product facts first):

* The side of an anchor p is sign(cross(end - start, p - start)); +1 is ``in``, -1 is ``out``,
  0 means the anchor is exactly on the (infinite) line: "no side yet", the track keeps its last side.
* A track crosses when its side flips from one side to the other and the path of its anchor in
  between (previous anchor -> current anchor, through any frames on the line and any frames in which
  the track was not seen) touches the counting *segment*; touching includes the segment's end points.
  So one-frame jumps over the line count, lines ending at the frame edge count, and frame gaps do not
  matter. A side flip whose path passes beyond the segment's ends is no crossing.
* Hysteresis (``min_distance_px`` > 0) and minimum stay (``min_stay_ms`` > 0): a crossing is *pending*
  until the anchor is at least ``min_distance_px`` past the line (perpendicular distance, on the new side)
  on a frame captured at least ``min_stay_ms`` after its arrival there; flipping back while pending
  cancels it, so an anchor jittering on the line, or a person standing on it while the detector's box
  wavers by more than the band, never counts. A track that ends (``retain``) while pending counts if its
  last anchor was ``min_distance_px`` past: a person who crosses and leaves the picture (or is hidden)
  within ``min_stay_ms`` is not lost. A confirmed crossing is reported with the frame and capture time of
  the anchor's first arrival on the new side, not the frame of confirmation: the event time is when the
  person crossed, independent of the hysteresis band and the stay. A flip back that never settles on the
  old side (never ``min_distance_px`` past it, back over the line within ``min_stay_ms``) is the box
  wavering, not a return: the crossing it withdrew keeps its first arrival when the track comes over again.
* A track counts at most once per direction until it is counted crossing back: ``in`` after ``in``
  (e.g. after walking around the end of the line) is not counted again.
* A track is never counted on the frame it is first seen (it has no previous side). A tracker issues
  an id only after a few frames; ``introduce`` places a new id where the track was first detected, so
  a crossing during those frames counts, reported on the first frame the id is seen on the new side.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from counting.config import LineConfig
from counting.snapshot import renumber_classes, restore_arrays
from foundation.errors import CamcountError

logger = logging.getLogger(__name__)

Direction = Literal["in", "out"]
_IN, _OUT = 1, -1


class LineStateError(CamcountError, ValueError):
    """A line counter snapshot cannot be restored; start the line from an empty state instead."""

    code = "COUNT_001"
    detail = "snapshot-unreadable"


@dataclass(frozen=True)
class CrossingEvent:
    """One counted crossing; ``frame_seq``/``capture_ts_ms`` are those of the first frame on the new side."""

    frame_seq: int
    capture_ts_ms: int
    line: str
    direction: Direction
    track_id: int
    class_id: int
    class_name: str


def _cross(d: np.ndarray, v: np.ndarray) -> np.ndarray:
    return d[..., 0] * v[..., 1] - d[..., 1] * v[..., 0]


def segments_touch(p0: np.ndarray, p1: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) whether each closed segment p0[i]->p1[i] shares a point with the closed segment a->b."""
    o1 = np.sign(_cross(b - a, p0 - a))
    o2 = np.sign(_cross(b - a, p1 - a))
    o3 = np.sign(_cross(p1 - p0, a - p0))
    o4 = np.sign(_cross(p1 - p0, b - p0))
    general = (o1 * o2 <= 0) & (o3 * o4 <= 0)
    collinear = (o1 == 0) & (o2 == 0)
    lo = np.maximum(np.minimum(p0, p1), np.minimum(a, b))
    hi = np.minimum(np.maximum(p0, p1), np.maximum(a, b))
    overlap = np.all(lo <= hi, axis=-1)
    return np.where(collinear, overlap, general)


class LineCounter:
    """Counts crossings of one line. Invariant: ``_ids`` is sorted and unique; every per-track array
    has one row per id in ``_ids``; ``_side`` is the last non-zero side seen (0 before any)."""

    def __init__(self, line: LineConfig, class_names: Sequence[str]) -> None:
        self.line = line
        self._class_names = list(class_names)
        self._start = np.asarray(line.start, np.float64)
        self._direction = np.asarray(line.end, np.float64) - self._start
        self._length = float(np.hypot(*self._direction))
        self._end = np.asarray(line.end, np.float64)
        self._ids = np.zeros(0, np.int64)
        self._prev = np.zeros((0, 2))
        self._side = np.zeros(0, np.int8)
        self._touched = np.zeros(0, bool)  # path since the last off-line frame touched the segment
        self._pending = np.zeros(0, np.int8)  # direction awaiting hysteresis, 0 if none
        self._pending_frame = np.zeros(0, np.int64)  # first arrival on the pending side
        self._pending_ts = np.zeros(0, np.int64)
        self._arrived_ts = np.zeros(0, np.int64)  # latest crossing of the line either way, for the stay
        self._withdrawn = np.zeros(0, np.int8)  # direction withdrawn by a flip back not yet settled, 0 if none
        self._withdrawn_frame = np.zeros(0, np.int64)
        self._withdrawn_ts = np.zeros(0, np.int64)
        self._last_counted = np.zeros(0, np.int8)
        self._class_id = np.zeros(0, np.int64)  # class of the latest box, -1 before any

    def update(
        self,
        frame_seq: int,
        capture_ts_ms: int,
        tracker_id: np.ndarray,
        anchors: np.ndarray,
        class_id: np.ndarray,
    ) -> list[CrossingEvent]:
        """Feed this frame's tracked anchors (unique ``tracker_id`` >= 0, (N, 2) ``anchors``); tracks not
        in this frame keep their state (occlusion). Returns the crossings confirmed on this frame."""
        tracker_id = np.asarray(tracker_id, np.int64)
        anchors = np.asarray(anchors, np.float64).reshape(-1, 2)
        class_id = np.asarray(class_id, np.int64)
        rows = self._rows_for(tracker_id, anchors)
        seen_before = rows >= 0
        rows, p, class_id = rows[seen_before], anchors[seen_before], class_id[seen_before]
        if len(rows) == 0:
            return []

        offset = _cross(self._direction, p - self._start)
        side = np.sign(offset).astype(np.int8)
        old_side = self._side[rows]
        touched = self._touched[rows] | segments_touch(self._prev[rows], p, self._start, self._end)
        flipped = (side != 0) & (old_side != 0) & (side != old_side)
        crossed = flipped & touched
        far = self._far_enough(offset)
        arrived = np.where(crossed, capture_ts_ms, self._arrived_ts[rows])
        stayed = capture_ts_ms - arrived >= self.line.min_stay_ms
        pending, withdrawn = self._pending[rows], self._withdrawn[rows]
        # 1. Back over the line before the crossing was confirmed: withdraw it, keeping its first arrival.
        back = crossed & (pending == -side)
        withdrawn = np.where(back, pending, withdrawn)
        self._withdrawn_frame[rows[back]] = self._pending_frame[rows[back]]
        self._withdrawn_ts[rows[back]] = self._pending_ts[rows[back]]
        # 2. Settled back on the old side, or went round the segment's end: the withdrawn crossing is over.
        settled = (withdrawn == -side) & (far | stayed)
        withdrawn = np.where(settled | (flipped & ~crossed), 0, withdrawn)
        pending = np.where((flipped & ~crossed) | back, 0, pending)
        # 3. Over the line: a crossing starts, dated at its withdrawn first arrival when it resumes one.
        starts = crossed & ~back
        resumed = starts & (withdrawn == side)
        pending = np.where(starts, side, pending)
        self._pending_frame[rows[starts]] = np.where(resumed, self._withdrawn_frame[rows], frame_seq)[starts]
        self._pending_ts[rows[starts]] = np.where(resumed, self._withdrawn_ts[rows], capture_ts_ms)[starts]
        withdrawn = np.where(starts, 0, withdrawn)

        confirmed = (pending != 0) & (side == pending) & far & stayed
        counted = confirmed & (self._last_counted[rows] != pending)
        self._class_id[rows] = class_id
        events = self._events(rows[counted], pending[counted])
        self._last_counted[rows[counted]] = pending[counted]
        pending[confirmed] = 0

        self._pending[rows] = pending
        self._withdrawn[rows] = withdrawn
        self._arrived_ts[rows] = arrived
        self._side[rows] = np.where(side != 0, side, old_side)
        self._touched[rows] = touched & (side == 0)
        self._prev[rows] = p
        if events:
            logger.debug("line %s: %d crossings at frame %d", self.line.name, len(events), frame_seq)
        return events

    def _far_enough(self, offset: np.ndarray) -> np.ndarray:
        """Whether each anchor with ``offset`` (cross product with the line vector) is past the hysteresis band."""
        return np.abs(offset) >= self.line.min_distance_px * self._length

    def _events(self, rows: np.ndarray, directions: np.ndarray) -> list[CrossingEvent]:
        return [
            CrossingEvent(
                frame_seq=int(self._pending_frame[row]),
                capture_ts_ms=int(self._pending_ts[row]),
                line=self.line.name,
                direction="in" if direction == _IN else "out",
                track_id=int(self._ids[row]),
                class_id=int(self._class_id[row]),
                class_name=self._class_names[int(self._class_id[row])],
            )
            for row, direction in zip(rows, directions)
        ]

    def introduce(self, tracker_id: np.ndarray, anchors: np.ndarray) -> None:
        """Start tracking ids not seen before at earlier ``anchors`` ((N, 2), e.g. where each track was first
        detected, before it had an id); ids already known are left as they are. Counts nothing."""
        self._rows_for(np.asarray(tracker_id, np.int64), np.asarray(anchors, np.float64).reshape(-1, 2))

    def _rows_for(self, tracker_id: np.ndarray, anchors: np.ndarray) -> np.ndarray:
        """Row of each id, or -1 for ids seen for the first time (which are added, with no crossing)."""
        rows = np.searchsorted(self._ids, tracker_id)
        known = rows < len(self._ids)
        known[known] = self._ids[rows[known]] == tracker_id[known]
        if not known.all():
            self._add(tracker_id[~known], anchors[~known])
            rows = np.searchsorted(self._ids, tracker_id)
        return np.where(known, rows, -1)

    def _add(self, ids: np.ndarray, anchors: np.ndarray) -> None:
        n = len(ids)
        side = np.sign(_cross(self._direction, anchors - self._start)).astype(np.int8)
        order = np.argsort(np.concatenate([self._ids, ids]), kind="stable")
        self._ids = np.concatenate([self._ids, ids])[order]
        self._prev = np.concatenate([self._prev, anchors])[order]
        self._side = np.concatenate([self._side, side])[order]
        self._touched = np.concatenate([self._touched, np.zeros(n, bool)])[order]
        self._pending = np.concatenate([self._pending, np.zeros(n, np.int8)])[order]
        self._pending_frame = np.concatenate([self._pending_frame, np.zeros(n, np.int64)])[order]
        self._pending_ts = np.concatenate([self._pending_ts, np.zeros(n, np.int64)])[order]
        self._arrived_ts = np.concatenate([self._arrived_ts, np.zeros(n, np.int64)])[order]
        self._withdrawn = np.concatenate([self._withdrawn, np.zeros(n, np.int8)])[order]
        self._withdrawn_frame = np.concatenate([self._withdrawn_frame, np.zeros(n, np.int64)])[order]
        self._withdrawn_ts = np.concatenate([self._withdrawn_ts, np.zeros(n, np.int64)])[order]
        self._last_counted = np.concatenate([self._last_counted, np.zeros(n, np.int8)])[order]
        self._class_id = np.concatenate([self._class_id, np.full(n, -1, np.int64)])[order]

    def retain(self, alive_ids: np.ndarray) -> list[CrossingEvent]:
        """Forget every track not in ``alive_ids`` (the tracker dropped it). Returns the crossings those tracks
        had waiting for nothing but ``min_stay_ms``: last anchor ``min_distance_px`` past, direction not yet counted.
        A track restored from a snapshot without classes and not seen since has no class and is left out."""
        keep = np.isin(self._ids, alive_ids)
        if keep.all():
            return []
        gone = np.flatnonzero(~keep)
        offset = _cross(self._direction, self._prev[gone] - self._start)
        due = ((self._pending[gone] != 0) & (np.sign(offset) == self._pending[gone]) & self._far_enough(offset)
               & (self._last_counted[gone] != self._pending[gone]) & (self._class_id[gone] >= 0))
        events = self._events(gone[due], self._pending[gone[due]])
        for name in _STATE_ARRAYS:
            setattr(self, name, getattr(self, name)[keep])
        return events

    def renumber_classes(self, new_ids: np.ndarray) -> None:
        """Follow a change of the model's class list: a track of class id ``c`` becomes class ``new_ids[c]``.

        Raises LineStateError if a track's class is not in the new list (``new_ids[c] == -1``)."""
        seen = self._class_id >= 0
        self._class_id[seen] = renumber_classes(self._class_id[seen], new_ids, LineStateError,
                                                f"line {self.line.name!r}")

    def to_state(self) -> dict[str, Any]:
        return {"line": self.line.name, **{name.lstrip("_"): getattr(self, name).tolist() for name in _STATE_ARRAYS}}

    @classmethod
    def from_state(cls, state: dict[str, Any], line: LineConfig, class_names: Sequence[str]) -> "LineCounter":
        counter = cls(line, class_names)
        if state.get("line") != line.name:
            raise LineStateError(f"state is for line {state.get('line')!r}, not {line.name!r}: discard the snapshot")
        if "class_id" not in state:  # a snapshot taken before lines kept classes: learnt at each track's next box
            state = {**state, "class_id": [-1] * len(state.get("ids", []))}
        if "arrived_ts" not in state:  # taken before withdrawn crossings were remembered: a pending one arrived
            tracks = len(state.get("ids", []))  # when it started, and nothing is withdrawn
            state = {**state, "arrived_ts": state.get("pending_ts", []), "withdrawn": [0] * tracks,
                     "withdrawn_frame": [0] * tracks, "withdrawn_ts": [0] * tracks}
        restore_arrays(counter, state, _STATE_ARRAYS, LineStateError, f"line {line.name!r}")
        return counter


_STATE_ARRAYS: dict[str, tuple[type, tuple[int, ...]]] = {
    "_ids": (np.int64, (-1,)),
    "_prev": (np.float64, (-1, 2)),
    "_side": (np.int8, (-1,)),
    "_touched": (bool, (-1,)),
    "_pending": (np.int8, (-1,)),
    "_pending_frame": (np.int64, (-1,)),
    "_pending_ts": (np.int64, (-1,)),
    "_arrived_ts": (np.int64, (-1,)),
    "_withdrawn": (np.int8, (-1,)),
    "_withdrawn_frame": (np.int64, (-1,)),
    "_withdrawn_ts": (np.int64, (-1,)),
    "_last_counted": (np.int8, (-1,)),
    "_class_id": (np.int64, (-1,)),
}
