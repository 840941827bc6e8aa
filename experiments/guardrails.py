"""Live guardrails: stop an experiment when a candidate keeps breaching its error-rate or latency limit.

Feed :meth:`GuardrailMonitor.observe` one observation per inferred frame and call :meth:`GuardrailMonitor.check`
periodically (e.g. every second). Invariants:

- a variant is judged on its frames of the last ``guardrails.window_seconds`` (by frame timestamp), and only
  once that window holds ``guardrails.min_window_frames`` frames; a window with fewer is "not judged", which
  neither starts nor ends a breach;
- a breach is continuous while every check since it began found the limit exceeded; one healthy check ends it;
- a stop is decided when a breach has lasted ``guardrails.breach_seconds`` (from the first breached check to
  the current one); the control is not guarded, since stopping the experiment would not take it away.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Literal

import numpy as np

from experiments.config import Experiment
from foundation.errors import CamcountError

logger = logging.getLogger(__name__)

GuardedMetric = Literal["error_rate", "p95_latency_ms", "output_drift"]


class UnknownVariant(CamcountError, KeyError):
    """An observation names a variant the experiment does not have; check the frame's experiment header."""

    code = "EXP_004"
    detail = "unknown-variant"


@dataclass(frozen=True)
class StopDecision:
    """Stop the experiment: ``variant`` breached ``metric`` (``observed`` > ``limit``) from ``since_ms`` on."""

    experiment: str
    variant: str
    metric: GuardedMetric
    observed: float
    limit: float
    since_ms: int
    at_ms: int

    @property
    def reason(self) -> str:
        seconds = (self.at_ms - self.since_ms) / 1000.0
        if self.metric == "error_rate":
            shown = f"{self.observed:.2%} > {self.limit:.2%}"
        elif self.metric == "output_drift":
            shown = f"{self.observed:.3f} > {self.limit:g} (Jensen-Shannon distance from the control's outputs)"
        else:
            shown = f"{self.observed:.1f} ms > {self.limit:g} ms"
        return f"guardrail: variant {self.variant} {self.metric} {shown} for {seconds:.0f} s"


class _Window:
    """The last ``window_ms`` of one variant's (ts_ms, latency_ms, error) observations."""

    def __init__(self, window_ms: float) -> None:
        self.window_ms = window_ms
        self.entries: deque[tuple[int, float, bool]] = deque()

    def add(self, ts_ms: int, latency_ms: float, error: bool) -> None:
        self.entries.append((ts_ms, latency_ms, error))

    def evict(self, now_ms: int) -> None:
        cutoff = now_ms - self.window_ms
        while self.entries and self.entries[0][0] <= cutoff:
            self.entries.popleft()


class GuardrailMonitor:
    """Rolling per-variant error rate and p95 end-to-end latency against the experiment's guardrails."""

    def __init__(self, experiment: Experiment) -> None:
        self.experiment = experiment
        self.guardrails = experiment.guardrails
        self._windows = {variant.name: _Window(self.guardrails.window_seconds * 1000.0)
                         for variant in experiment.candidates}
        self._breach_since: dict[tuple[str, GuardedMetric], int] = {}

    def observe(self, variant: str, ts_ms: int, latency_ms: float, error: bool) -> None:
        """Record one inferred frame of ``variant`` (the control's frames are accepted and ignored)."""
        if variant == self.experiment.control:
            return
        window = self._windows.get(variant)
        if window is None:
            raise UnknownVariant(f"experiment {self.experiment.name!r} has no variant {variant!r}; "
                                 f"it has {self.experiment.variant_names}")
        window.add(ts_ms, latency_ms, error)

    def check(self, now_ms: int, output_drift: dict[str, float] | None = None) -> StopDecision | None:
        """Judge every candidate's window at ``now_ms``; the first breach older than breach_seconds stops.

        ``output_drift``: per candidate, the Jensen-Shannon distance of its outputs in the same window from the
        control's, measured by the caller (``ab guard``); judged against ``guardrails.max_output_drift`` when set,
        with the same breach rule. A candidate missing from it (too few frames on a side) is not judged on it.
        """
        breach_ms = self.guardrails.breach_seconds * 1000.0
        for variant, window in self._windows.items():
            window.evict(now_ms)
            if len(window.entries) < self.guardrails.min_window_frames:
                continue
            errors = np.fromiter((entry[2] for entry in window.entries), dtype=np.bool_)
            latencies = np.fromiter((entry[1] for entry in window.entries), dtype=np.float64)
            ok_latencies = latencies[~errors]
            observed: dict[GuardedMetric, tuple[float, float]] = {
                "error_rate": (float(errors.mean()), self.guardrails.max_error_rate),
                "p95_latency_ms": (float(np.percentile(ok_latencies, 95)) if ok_latencies.size else 0.0,
                                   self.guardrails.max_p95_latency_ms),
            }
            drift = (output_drift or {}).get(variant)
            if self.guardrails.max_output_drift is not None and drift is not None:
                observed["output_drift"] = (drift, self.guardrails.max_output_drift)
            for metric, (value, limit) in observed.items():
                key = (variant, metric)
                if value <= limit:
                    if self._breach_since.pop(key, None) is not None:
                        logger.info("guardrail %s recovered for %s: %.4g <= %g", metric, variant, value, limit)
                    continue
                since = self._breach_since.setdefault(key, now_ms)
                if since == now_ms:
                    logger.warning("guardrail %s breached by %s: %.4g > %g", metric, variant, value, limit)
                if now_ms - since >= breach_ms:
                    return StopDecision(experiment=self.experiment.name, variant=variant, metric=metric,
                                        observed=value, limit=limit, since_ms=since, at_ms=now_ms)
        return None
