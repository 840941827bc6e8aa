"""One window of a camera's outputs (one model version) against its reference: a score per signal and measure, and
whether the window drifted.

Signals, both per frame inferred ``ok`` (``inference_log`` holds them):

- ``detections``: boxes kept per frame. A blocked lens, a camera turned away or a model that stopped seeing
  people moves it; so does the crowd, which is why the reference should be a comparable period.
- ``confidence``: the mean confidence of a frame's boxes, over frames with at least one box. Image quality
  (darkness, blur, glare) and the model's calibration move it; the crowd hardly does.

Decision: a signal drifts in a window when at least ``min_measures`` of the measures exceed their thresholds (a
vote: the default, two of three, keeps one over-sensitive measure from raising alarms alone); the window drifts
when any signal does. A window is judged only when it and its reference hold at least ``min_frames`` frames; the
confidence signal only when both sides hold ``min_frames`` frames with boxes (a camera whose frames all lost their
boxes is caught by ``detections``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from monitoring.distances import MEASURES, Distribution, Measure, distance

Signal = Literal["detections", "confidence"]
SIGNALS: tuple[Signal, ...] = ("detections", "confidence")
MIN_SCALE: dict[Signal, float] = {"detections": 1.0, "confidence": 0.01}
"""Smallest standard deviation the normalised Wasserstein divides by, per signal (one box; one point of
confidence)."""

Status = Literal["judged", "insufficient-data", "no-reference", "reference-period"]


@dataclass(frozen=True)
class Thresholds:
    """A score above its measure's threshold counts as drift. Defaults: PSI 0.1 (the usual "moderate shift"
    bound, Evidently's default), Jensen-Shannon 0.1 (Evidently's and NannyML's), normalised Wasserstein 0.1
    (Evidently's)."""

    psi: float = 0.1
    jensen_shannon: float = 0.1
    wasserstein: float = 0.1

    def of(self, measure: Measure) -> float:
        return float(getattr(self, measure))


@dataclass(frozen=True)
class WindowSample:
    """What one camera and model version produced in a period: the distribution of detections per frame (every
    frame inferred ``ok``) and of mean confidence (frames with at least one box)."""

    detections: Distribution
    confidence: Distribution

    @property
    def frames(self) -> int:
        return int(self.detections.total)

    @property
    def frames_with_boxes(self) -> int:
        return int(self.confidence.total)

    @property
    def empty_share(self) -> float:
        """Share of frames without any box (NaN without frames)."""
        return self.detections.share_at_or_below(0)

    def of(self, signal: Signal) -> Distribution:
        return self.detections if signal == "detections" else self.confidence

    @staticmethod
    def of_frames(detections: list[int] | tuple[int, ...], mean_confidence: list[float] | tuple[float, ...]
                  ) -> "WindowSample":
        """From per-frame values (one detections count and mean confidence per frame; the latter ignored where
        the count is 0)."""
        kept = [c for n, c in zip(detections, mean_confidence, strict=True) if n > 0]
        return WindowSample(Distribution.of(list(detections)), Distribution.of(kept))


@dataclass(frozen=True)
class Score:
    signal: Signal
    measure: Measure
    value: float
    threshold: float

    @property
    def above(self) -> bool:
        return self.value > self.threshold


@dataclass(frozen=True)
class Comparison:
    """A window against its reference. ``scores`` is empty unless ``status`` is ``judged``; a signal that could
    not be scored (too few frames with boxes) has no scores."""

    status: Status
    scores: tuple[Score, ...] = ()
    drifted_signals: tuple[Signal, ...] = ()
    frames: int = 0
    reference_frames: int = 0
    means: dict[Signal, tuple[float, float]] = field(default_factory=dict)
    """Per signal: (reference mean, current mean), NaN where a side has no observation."""
    empty_shares: tuple[float, float] = (float("nan"), float("nan"))
    """(reference, current) share of frames without boxes."""

    @property
    def judged(self) -> bool:
        return self.status == "judged"

    @property
    def drifted(self) -> bool:
        return bool(self.drifted_signals)


def compare(reference: WindowSample | None, current: WindowSample | None, thresholds: Thresholds = Thresholds(),
            measures: tuple[Measure, ...] = MEASURES, min_measures: int = 2, min_frames: int = 100,
            bins: int = 10) -> Comparison:
    """Score ``current`` against ``reference`` with ``measures`` on every signal (see the module docstring)."""
    if not 1 <= min_measures <= len(measures):
        raise ValueError(f"min_measures must be between 1 and the {len(measures)} measures, got {min_measures}")
    frames = 0 if current is None else current.frames
    reference_frames = 0 if reference is None else reference.frames
    if reference is None or reference_frames < min_frames:
        return Comparison("no-reference", frames=frames, reference_frames=reference_frames)
    if current is None or frames < min_frames:
        return Comparison("insufficient-data", frames=frames, reference_frames=reference_frames)
    scores: list[Score] = []
    drifted: list[Signal] = []
    means: dict[Signal, tuple[float, float]] = {}
    for signal in SIGNALS:
        ref, cur = reference.of(signal), current.of(signal)
        means[signal] = (ref.mean(), cur.mean())
        if ref.total < min_frames or cur.total < min_frames:
            continue
        signal_scores = [Score(signal, m, distance(m, ref, cur, MIN_SCALE[signal], bins), thresholds.of(m))
                         for m in measures]
        scores += signal_scores
        if sum(s.above for s in signal_scores) >= min_measures:
            drifted.append(signal)
    return Comparison("judged", tuple(scores), tuple(drifted), frames, reference_frames, means,
                      (reference.empty_share, current.empty_share))
