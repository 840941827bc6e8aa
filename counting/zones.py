"""Polygon zone counter: occupancy per class, entries and exits per track, dwell time per track.

Rules:

* Only tracked anchors (confirmed tracks) count, the same population the line counters see.
* A track is inside while its anchor is inside the polygon (even-odd rule; an anchor exactly on the
  boundary may fall either way). Its first frame inside is an ``enter`` (also when the track is first
  seen inside), its first frame seen outside afterwards an ``exit`` carrying its dwell time
  (exit capture time - enter capture time).
* A track that disappears while inside (occlusion) stays inside and is not in the occupancy; if it
  reappears inside there is no new entry. If the tracker drops it, ``retain`` emits its exit at the
  last frame it was seen inside.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from counting.config import ZoneConfig
from counting.snapshot import renumber_classes, restore_arrays
from foundation.errors import CamcountError


class ZoneStateError(CamcountError, ValueError):
    """A zone counter snapshot cannot be restored; start the zone from an empty state instead."""

    code = "COUNT_001"
    detail = "snapshot-unreadable"


@dataclass(frozen=True)
class ZoneEvent:
    """A track entering or leaving a zone; ``dwell_ms`` is set on exits only."""

    frame_seq: int
    capture_ts_ms: int
    zone: str
    kind: Literal["enter", "exit"]
    track_id: int
    class_id: int
    class_name: str
    dwell_ms: int | None = None


@dataclass(frozen=True)
class ZoneFrame:
    """Zone result of one frame. ``occupancy`` has every class of the zone, 0 included."""

    occupancy: dict[str, int]
    events: list[ZoneEvent]


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """(N,) even-odd test of (N, 2) points against a (V, 2) polygon, vectorised over points and edges."""
    x, y = points[:, 0:1], points[:, 1:2]
    xi, yi = polygon[:, 0][None, :], polygon[:, 1][None, :]
    xj, yj = np.roll(polygon[:, 0], 1)[None, :], np.roll(polygon[:, 1], 1)[None, :]
    spans = (yi > y) != (yj > y)
    dy = np.broadcast_to(yj - yi, spans.shape)
    x_at_y = xi + np.divide((xj - xi) * (y - yi), dy, out=np.zeros(spans.shape), where=spans)
    return np.count_nonzero(spans & (x < x_at_y), axis=1) % 2 == 1


class ZoneCounter:
    """Invariant: ``_ids`` is sorted and unique and every per-track array has one row per id;
    ``_enter_*`` and ``_last_*`` are meaningful only where ``_inside``."""

    def __init__(self, zone: ZoneConfig, class_names: Sequence[str], zone_class_ids: Sequence[int]) -> None:
        self.zone = zone
        self._class_names = list(class_names)
        self._zone_class_ids = np.asarray(sorted(zone_class_ids), np.int64)
        self._polygon = np.asarray(zone.polygon, np.float64)
        self._ids = np.zeros(0, np.int64)
        self._class_id = np.zeros(0, np.int64)
        self._inside = np.zeros(0, bool)
        self._enter_frame = np.zeros(0, np.int64)
        self._enter_ts = np.zeros(0, np.int64)
        self._last_frame = np.zeros(0, np.int64)
        self._last_ts = np.zeros(0, np.int64)

    def update(
        self,
        frame_seq: int,
        capture_ts_ms: int,
        tracker_id: np.ndarray,
        anchors: np.ndarray,
        class_id: np.ndarray,
    ) -> ZoneFrame:
        """Feed this frame's tracked anchors of the zone's classes (unique ``tracker_id`` >= 0)."""
        tracker_id = np.asarray(tracker_id, np.int64)
        class_id = np.asarray(class_id, np.int64)
        inside_now = points_in_polygon(np.asarray(anchors, np.float64).reshape(-1, 2), self._polygon)
        counts = [int(np.count_nonzero(inside_now & (class_id == c))) for c in self._zone_class_ids]
        occupancy = {self._class_names[c]: n for c, n in zip(self._zone_class_ids, counts)}

        rows = self._rows_for(tracker_id, class_id)
        was_inside = self._inside[rows]
        entering = inside_now & ~was_inside
        leaving = ~inside_now & was_inside
        self._enter_frame[rows[entering]] = frame_seq
        self._enter_ts[rows[entering]] = capture_ts_ms
        events = [self._event(row, "enter", frame_seq, capture_ts_ms) for row in rows[entering]]
        events += [
            self._event(row, "exit", frame_seq, capture_ts_ms, capture_ts_ms - int(self._enter_ts[row]))
            for row in rows[leaving]
        ]
        self._inside[rows] = inside_now
        self._last_frame[rows[inside_now]] = frame_seq
        self._last_ts[rows[inside_now]] = capture_ts_ms
        return ZoneFrame(occupancy, events)

    def dwell_ms(self, capture_ts_ms: int) -> dict[int, int]:
        """Current dwell of every track inside (occluded ones included), by track id."""
        inside = np.flatnonzero(self._inside)
        return {int(self._ids[r]): capture_ts_ms - int(self._enter_ts[r]) for r in inside}

    def retain(self, alive_ids: np.ndarray) -> list[ZoneEvent]:
        """Forget tracks not in ``alive_ids``; those that were inside exit at the last frame seen inside."""
        keep = np.isin(self._ids, alive_ids)
        if keep.all():
            return []
        events = [
            self._event(row, "exit", int(self._last_frame[row]), int(self._last_ts[row]),
                        int(self._last_ts[row] - self._enter_ts[row]))
            for row in np.flatnonzero(~keep & self._inside)
        ]
        for name in _STATE_ARRAYS:
            setattr(self, name, getattr(self, name)[keep])
        return events

    def _event(self, row: int, kind: Literal["enter", "exit"], frame_seq: int, ts: int,
               dwell_ms: int | None = None) -> ZoneEvent:
        class_id = int(self._class_id[row])
        return ZoneEvent(frame_seq, ts, self.zone.name, kind, int(self._ids[row]), class_id,
                         self._class_names[class_id], dwell_ms)

    def _rows_for(self, tracker_id: np.ndarray, class_id: np.ndarray) -> np.ndarray:
        rows = np.searchsorted(self._ids, tracker_id)
        known = rows < len(self._ids)
        known[known] = self._ids[rows[known]] == tracker_id[known]
        if not known.all():
            n = int(np.count_nonzero(~known))
            order = np.argsort(np.concatenate([self._ids, tracker_id[~known]]), kind="stable")
            additions = {"_ids": tracker_id[~known], "_class_id": class_id[~known], "_inside": np.zeros(n, bool)}
            for name, (dtype, _) in _STATE_ARRAYS.items():
                added = additions.get(name, np.zeros(n, dtype))
                setattr(self, name, np.concatenate([getattr(self, name), added])[order])
            rows = np.searchsorted(self._ids, tracker_id)
        return rows

    def to_state(self) -> dict[str, Any]:
        return {"zone": self.zone.name, **{name.lstrip("_"): getattr(self, name).tolist() for name in _STATE_ARRAYS}}

    @classmethod
    def from_state(cls, state: dict[str, Any], zone: ZoneConfig, class_names: Sequence[str],
                   zone_class_ids: Sequence[int]) -> "ZoneCounter":
        if state.get("zone") != zone.name:
            raise ZoneStateError(f"state is for zone {state.get('zone')!r}, not {zone.name!r}: discard the snapshot")
        counter = cls(zone, class_names, zone_class_ids)
        restore_arrays(counter, state, _STATE_ARRAYS, ZoneStateError, f"zone {zone.name!r}")
        return counter

    def renumber_classes(self, new_ids: np.ndarray) -> None:
        """Follow a change of the model's class list: a track of class id ``c`` becomes class ``new_ids[c]``.

        Raises ZoneStateError if a track's class is not in the new list (``new_ids[c] == -1``)."""
        self._class_id = renumber_classes(self._class_id, new_ids, ZoneStateError, f"zone {self.zone.name!r}")


_STATE_ARRAYS: dict[str, tuple[type, tuple[int, ...]]] = {
    "_ids": (np.int64, (-1,)),
    "_class_id": (np.int64, (-1,)),
    "_inside": (bool, (-1,)),
    "_enter_frame": (np.int64, (-1,)),
    "_enter_ts": (np.int64, (-1,)),
    "_last_frame": (np.int64, (-1,)),
    "_last_ts": (np.int64, (-1,)),
}
