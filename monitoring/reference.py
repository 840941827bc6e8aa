"""Windows and reference periods, as epoch milliseconds (UTC).

Windows are tumbling and aligned to the epoch: ``[n * window, (n + 1) * window)``. A window is evaluated once it
has been over for ``lateness`` (frames reach ClickHouse through the counting app's sink a little after capture).

The reference a window is compared with (``ReferenceMode``):

- ``pinned``: a fixed period. Either one set explicitly (after a promotion, pin a period the new version served
  well: every camera's frames in it, whatever version inferred them), or, when none is set, each camera and model
  version's own first ``reference_seconds`` of frames: the version's first hour on that camera, pinned
  automatically when it starts serving. A window inside that period is not judged (``reference-period``).
- ``same-hour-last-week``: the camera's frames, whatever version inferred them, in the same clock hour one week
  before the window. The crowd, the light and the traffic at that hour are alike, and a new version is compared
  with what its predecessor saw, so a version that behaves differently on every camera stands out as a model
  problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ReferenceMode = Literal["pinned", "same-hour-last-week"]
HOUR_MS = 3_600_000
WEEK_MS = 7 * 24 * HOUR_MS


@dataclass(frozen=True)
class Period:
    start_ms: int
    end_ms: int

    def __post_init__(self) -> None:
        if self.end_ms <= self.start_ms:
            raise ValueError(f"empty period [{self.start_ms}, {self.end_ms})")

    def overlaps(self, other: "Period") -> bool:
        return self.start_ms < other.end_ms and other.start_ms < self.end_ms


def window_of(t_ms: int, window_ms: int) -> Period:
    """The window holding ``t_ms``."""
    start = t_ms // window_ms * window_ms
    return Period(start, start + window_ms)


def due_windows(now_ms: int, window_ms: int, lateness_ms: int, after_ms: int | None, backfill_ms: int) -> list[Period]:
    """The windows to evaluate now, oldest first: every window over for ``lateness_ms`` that starts after
    ``after_ms`` (the last window evaluated; None: none yet), going back at most ``backfill_ms``."""
    last_due = window_of(now_ms - lateness_ms, window_ms).start_ms - window_ms  # the newest window that is over
    first = window_of(now_ms - backfill_ms, window_ms).start_ms
    if after_ms is not None:
        first = max(first, after_ms + window_ms)
    return [Period(s, s + window_ms) for s in range(first, last_due + 1, window_ms)]


def same_hour_last_week(window: Period) -> Period:
    hour = window.start_ms // HOUR_MS * HOUR_MS - WEEK_MS
    return Period(hour, hour + HOUR_MS)


def pinned_after(first_frame_ms: int, reference_ms: int) -> Period:
    """The automatic pinned reference of a camera and version first seen at ``first_frame_ms``."""
    return Period(first_frame_ms, first_frame_ms + reference_ms)
