"""Tumbling-window aggregates of what a camera counted: crossings per window and zone occupancy per minute.

Pure and serialisable (``to_state``): the streaming app keeps them in the same table value as the camera's
counter, so a restarted worker resumes both from one consistent snapshot. Every emitted row is an absolute
value with a growing version (a window's count, a minute's frame count), so sinks keep the latest and
re-emits or replays never add up. Every row also names the frame it traces to (``last_frame_seq``,
``last_capture_ts_ms``): the latest counted frame that changed it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from counting.lines import CrossingEvent
from counting.zones import ZoneEvent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Labels:
    """Who produced the counts: carried on every aggregate so it traces back to model and experiment."""

    camera_id: str
    model_name: str
    model_version: str
    variant: str
    experiment: str

    def key(self) -> str:
        return "|".join((self.variant, self.experiment, self.model_name, self.model_version))

    def as_fields(self) -> dict[str, str]:
        return {"camera_id": self.camera_id, "model_name": self.model_name, "model_version": self.model_version,
                "variant": self.variant, "experiment": self.experiment}


def window_start_ms(capture_ts_ms: int, window_seconds: int) -> int:
    width = window_seconds * 1000
    return capture_ts_ms - capture_ts_ms % width


class CrossingWindows:
    """Crossings per tumbling window, line, class, direction and labels.

    A window is open until ``close_old`` sees a frame more than ``open_windows`` windows after it; then its total
    is forgotten and its last emitted row is final. Windows close in order and never reopen, even if a later
    frame's capture time goes backwards (``open_from_ms`` only grows and is part of the state).

    A crossing counts in the window of its own ``capture_ts_ms`` (a crossing confirmed after hysteresis keeps
    the time it started), unless that window is closed: then it counts in the oldest open window and a warning
    is logged. Restarting a forgotten window's total at 1 instead would lose the crossing, because sinks keep
    the largest count of a window.
    """

    def __init__(self, window_seconds: int, open_windows: int = 10, state: dict[str, Any] | None = None) -> None:
        self.window_seconds = window_seconds
        self.open_windows = open_windows
        state = state or {}
        if "totals" not in state:  # the previous release's state: totals only, no window closed yet
            state = {"totals": state, "open_from_ms": None}
        self._totals: dict[str, int] = dict(state["totals"])
        self._open_from_ms: int | None = state["open_from_ms"]

    def add(self, frame_seq: int, capture_ts_ms: int, crossings: Iterable[CrossingEvent], labels: Labels,
            now_ms: int) -> list[dict[str, Any]]:
        """Count ``crossings``, confirmed by counting frame ``frame_seq``; returns one row per window they changed
        (Avro ``WindowCount`` fields), whose ``last_frame_seq``/``last_capture_ts_ms`` are that frame's."""
        changed: dict[str, dict[str, Any]] = {}
        for c in crossings:
            start = window_start_ms(c.capture_ts_ms, self.window_seconds)
            if self._open_from_ms is not None and start < self._open_from_ms:
                log.warning("camera %s: crossing %s %s of frame %d confirmed after its window %d closed; "
                            "counted in window %d", labels.camera_id, c.line, c.direction, c.frame_seq, start,
                            self._open_from_ms)
                start = self._open_from_ms
            key = "|".join(map(str, (start, c.line, c.class_name, c.direction, labels.key())))
            self._totals[key] = self._totals.get(key, 0) + 1
            changed[key] = {**labels.as_fields(), "window_start_ms": start, "window_seconds": self.window_seconds,
                            "line": c.line, "class_name": c.class_name, "direction": c.direction,
                            "last_frame_seq": frame_seq, "last_capture_ts_ms": capture_ts_ms,
                            "count": self._totals[key], "updated_ms": now_ms}
        return list(changed.values())

    def close_old(self, capture_ts_ms: int) -> None:
        """Close every window more than ``open_windows`` windows before the one of ``capture_ts_ms``."""
        oldest = window_start_ms(capture_ts_ms, self.window_seconds) - self.open_windows * self.window_seconds * 1000
        self._open_from_ms = oldest if self._open_from_ms is None else max(self._open_from_ms, oldest)
        for key in [k for k in self._totals if int(k.split("|", 1)[0]) < self._open_from_ms]:
            del self._totals[key]

    def to_state(self) -> dict[str, Any]:
        return {"totals": dict(self._totals), "open_from_ms": self._open_from_ms}


class ZoneMinutes:
    """Occupancy per zone, class and minute: frames, max and summed occupancy, entries, exits, dwell.

    Rows of the current minute are emitted every ``emit_every`` frames and whenever tracks enter or leave;
    a minute's final row is emitted when the first frame of a later minute arrives. A row's ``last_frame_seq``
    and ``last_capture_ts_ms`` are those of the latest frame counted into it (for a final row, the minute's last
    frame, not the later frame that closed it); -1 when it was restored from state saved before they were kept.
    """

    def __init__(self, emit_every: int = 25, state: dict[str, Any] | None = None) -> None:
        self.emit_every = emit_every
        state = state or {}
        self._minute: int | None = state.get("minute")
        self._stats: dict[str, dict[str, int]] = {
            k: {"last_frame_seq": -1, "last_capture_ts_ms": -1, **v} for k, v in state.get("stats", {}).items()}

    def update(self, frame_seq: int, capture_ts_ms: int, occupancy: dict[str, dict[str, int]],
               events: Iterable[ZoneEvent], labels: Labels, now_ms: int) -> list[dict[str, Any]]:
        minute = window_start_ms(capture_ts_ms, 60)
        rows: list[dict[str, Any]] = []
        if self._minute is not None and minute != self._minute:
            rows += self._rows(labels, now_ms)
            self._stats.clear()
        self._minute = minute
        for zone, by_class in occupancy.items():
            for class_name, n in by_class.items():
                stats = self._stats.setdefault(f"{zone}|{class_name}|{labels.key()}", {
                    "frames": 0, "max_occupancy": 0, "occupancy_sum": 0, "entries": 0, "exits": 0,
                    "dwell_ms_sum": 0})
                stats["frames"] += 1
                stats["max_occupancy"] = max(stats["max_occupancy"], n)
                stats["occupancy_sum"] += n
                stats["last_frame_seq"], stats["last_capture_ts_ms"] = frame_seq, capture_ts_ms
        moved = self._count(events, labels)
        due = [k for k, s in self._stats.items() if k in moved or s["frames"] % self.emit_every == 0]
        return rows + self._rows(labels, now_ms, due)

    def end(self, events: Iterable[ZoneEvent], labels: Labels, now_ms: int) -> list[dict[str, Any]]:
        """The camera's stream ended: count the exits in ``events`` (the tracks that were inside) into the current
        minute, adding no frame, and emit every row of that minute, since no later frame may come to close it."""
        if self._minute is None:
            return []
        self._count(events, labels)
        return self._rows(labels, now_ms)

    def _count(self, events: Iterable[ZoneEvent], labels: Labels) -> set[str]:
        """Add entries, exits and dwell to the current minute's rows; returns the keys of the rows they changed."""
        moved = set()
        for event in events:
            key = f"{event.zone}|{event.class_name}|{labels.key()}"
            if key not in self._stats:
                continue
            moved.add(key)
            if event.kind == "enter":
                self._stats[key]["entries"] += 1
            else:
                self._stats[key]["exits"] += 1
                self._stats[key]["dwell_ms_sum"] += event.dwell_ms or 0
        return moved

    def _rows(self, labels: Labels, now_ms: int, keys: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Rows for ``keys`` (default all); each row's labels come from its key, i.e. from when it was counted."""
        rows = []
        for key in self._stats if keys is None else keys:
            zone, class_name, variant, experiment, model_name, model_version = key.split("|")
            rows.append({"camera_id": labels.camera_id, "model_name": model_name, "model_version": model_version,
                         "variant": variant, "experiment": experiment, "zone": zone, "class_name": class_name,
                         "minute_ms": self._minute, **self._stats[key], "updated_ms": now_ms})
        return rows

    def to_state(self) -> dict[str, Any]:
        return {"minute": self._minute, "stats": {k: dict(v) for k, v in self._stats.items()}}
