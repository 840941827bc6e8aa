"""Drift that persists: k consecutive drifted windows start an episode, k consecutive quiet ones end it.

One alarm per episode: :meth:`Persistence.update` returns ``onset`` exactly once, on the window that completes the
k-th consecutive drifted window, however long the drift then lasts. A window that was not judged (too few frames,
no reference) neither extends nor breaks a run, so a camera that goes quiet for a while keeps its state. The
symmetric end rule (k quiet windows) keeps a score that hovers around its threshold from raising a new alarm every
few windows.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

Transition = Literal["onset", "active", "resolved", "quiet", "not-judged"]


@dataclass
class EpisodeState:
    """Per key: the current run of drifted (``drifted_run``) or quiet (``quiet_run``) judged windows, whether an
    episode is active, and when its run began (``since``: the first drifted window of the run)."""

    drifted_run: int = 0
    quiet_run: int = 0
    active: bool = False
    since: int | None = None


class Persistence:
    def __init__(self, windows: int) -> None:
        if windows < 1:
            raise ValueError(f"persistence needs at least 1 window, got {windows}")
        self.windows = windows
        self._states: dict[Hashable, EpisodeState] = {}

    def state(self, key: Hashable) -> EpisodeState:
        return self._states.setdefault(key, EpisodeState())

    def update(self, key: Hashable, window: int, drifted: bool | None) -> Transition:
        """The window starting at ``window`` (any increasing number, e.g. its start in ms) was judged ``drifted``
        (None: not judged). Windows of one key must come in order."""
        state = self.state(key)
        if drifted is None:
            return "not-judged"
        if drifted:
            if state.drifted_run == 0:
                state.since = window
            state.drifted_run += 1
            state.quiet_run = 0
            if state.active:
                return "active"
            if state.drifted_run >= self.windows:
                state.active = True
                return "onset"
            return "quiet"
        state.quiet_run += 1
        state.drifted_run = 0
        if state.active and state.quiet_run >= self.windows:
            state.active = False
            state.since = None
            return "resolved"
        if not state.active:
            state.since = None
        return "active" if state.active else "quiet"

    def resume(self, key: Hashable, history: Sequence[tuple[int, bool | None]], active: bool) -> EpisodeState:
        """Restore ``key``'s state after a restart from its latest windows (oldest first, None where not judged)
        and whether an episode was active after the last of them: the runs are counted back from the newest
        window, so an episode that began long before ``history`` stays active and raises no second onset."""
        state = EpisodeState(active=active)
        judged = [(window, drifted) for window, drifted in history if drifted is not None]
        for window, drifted in reversed(judged):
            if drifted and state.quiet_run == 0:
                state.drifted_run += 1
                state.since = window
            elif not drifted and state.drifted_run == 0:
                state.quiet_run += 1
            else:
                break
        if not state.drifted_run and not active:
            state.since = None
        self._states[key] = state
        return state

    def active(self) -> list[Hashable]:
        """The keys with an episode on."""
        return [key for key, state in self._states.items() if state.active]

    def snapshot(self) -> dict[Hashable, EpisodeState]:
        """A copy of every key's state, for :meth:`restore` when the window it was taken before must be redone."""
        return {key: replace(state) for key, state in self._states.items()}

    def restore(self, snapshot: dict[Hashable, EpisodeState]) -> None:
        self._states = {key: replace(state) for key, state in snapshot.items()}

    def replay(self, key: Hashable, history: Iterable[tuple[int, bool | None]]) -> EpisodeState:
        """Rebuild ``key``'s state from its earlier windows (oldest first), e.g. after a restart."""
        self._states.pop(key, None)
        for window, drifted in history:
            self.update(key, window, drifted)
        return self.state(key)
