"""One window of a camera's outputs (one model version) against its reference: a score per signal and measure, and
whether the window drifted.

Signals, over frames inferred ``ok`` (``inference_log`` holds them):

- ``detections``: boxes kept per frame. A blocked lens, a camera turned away or a model that stopped seeing
  people moves it; so does the crowd, which is why the reference should be a comparable period.
- ``confidence``: the mean confidence of a frame's boxes, over frames with at least one box. Image quality
  (darkness, blur, glare) and the model's calibration move it; the crowd hardly does.
- ``box_area``: log10 of each box's area over its frame's area (at least :data:`AREA_FLOOR`), over every box. A
  zoomed or moved camera, a changed input size, a model that lost the small (far) objects move it. The log makes
  the normalised Wasserstein a relative change (0.1 = boxes about 26 % larger or smaller); the quantile bins of
  PSI and JS do not depend on it.
- ``class_mix``: the share of each class name among the boxes. A model that confuses classes, a scene that
  changed its traffic (vans instead of people) move it. Categorical: scored only with the measures of
  :data:`monitoring.distances.CATEGORICAL_MEASURES` (PSI, JS) among those asked for.

Decision: a signal drifts in a window when at least ``min_measures`` of its measures exceed their thresholds (a
vote: the default, two of three, keeps one over-sensitive measure from raising alarms alone); ``class_mix``, which
has fewer measures, needs ``min(min_measures, its measures)`` of them (with the defaults: both PSI and JS). The
window drifts when any signal does. A window is judged only when it and its reference hold at least
``min_frames`` frames; the confidence signal only when both sides hold ``min_frames`` frames with boxes (a camera
whose frames all lost their boxes is caught by ``detections``); the two box signals only when both sides hold
``min_frames`` frames with boxes whose boxes were recorded one by one (``box_frames``: frames written before
``inference_log`` had per-box columns have none), so the unit of evidence is the frame, not the box (the boxes of
one frame are the same scene, not independent draws).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from monitoring.distances import (
    CATEGORICAL_MEASURES,
    MEASURES,
    Categories,
    Distribution,
    Measure,
    category_distance,
    distance,
)

Signal = Literal["detections", "confidence", "box_area", "class_mix"]
SIGNALS: tuple[Signal, ...] = ("detections", "confidence", "box_area", "class_mix")
BOX_SIGNALS: tuple[Signal, ...] = ("box_area", "class_mix")
"""The signals read from each box rather than each frame."""
MIN_SCALE: dict[Signal, float] = {"detections": 1.0, "confidence": 0.01, "box_area": 0.05, "class_mix": 0.0}
"""Smallest standard deviation the normalised Wasserstein divides by, per numeric signal (one box; one point of
confidence; 0.05 in log10 of the area, boxes 12 % larger or smaller). ``class_mix`` has no Wasserstein."""
AREA_FLOOR = 1e-6
"""Smallest box area ratio (a degenerate box of zero area would have no logarithm): about a 0.6 px square on a
768x576 frame."""
AREA_DECIMALS = 2
"""``box_area`` values are rounded to 0.01 in log10 (2.3 % of the area), so a window is a few hundred distinct
values, far below any threshold's resolution."""


def log_area(ratio: float) -> float:
    """The ``box_area`` value of a box whose area is ``ratio`` of its frame's."""
    return round(math.log10(max(ratio, AREA_FLOOR)), AREA_DECIMALS)


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


def _no_values() -> Distribution:
    return Distribution.of([])


def _no_names() -> Categories:
    return Categories.of([])


@dataclass(frozen=True)
class WindowSample:
    """What one camera and model version produced in a period: the distribution of detections per frame (every
    frame inferred ``ok``) and of mean confidence (frames with at least one box); and, over the boxes of the
    ``box_frames`` frames whose boxes were recorded one by one, the distribution of :func:`log_area` and the class
    mix (empty, with ``box_frames`` 0, where no frame has per-box data)."""

    detections: Distribution
    confidence: Distribution
    box_area: Distribution = field(default_factory=_no_values)
    class_mix: Categories = field(default_factory=_no_names)
    box_frames: int = 0

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

    def of(self, signal: Signal) -> Distribution | Categories:
        return getattr(self, signal)

    def signal_frames(self, signal: Signal) -> int:
        """The frames a signal's distribution rests on (what ``min_frames`` is compared with)."""
        if signal == "detections":
            return self.frames
        return self.frames_with_boxes if signal == "confidence" else self.box_frames

    @staticmethod
    def of_frames(detections: list[int] | tuple[int, ...], mean_confidence: list[float] | tuple[float, ...],
                  area_ratios: list[float] | tuple[float, ...] | None = None,
                  classes: list[str] | tuple[str, ...] | None = None) -> "WindowSample":
        """From per-frame values (one detections count and mean confidence per frame; the latter ignored where
        the count is 0) and, optionally, every box of those frames (``area_ratios`` and ``classes``, one per box,
        ``sum(detections)`` of each): then every frame with boxes counts in ``box_frames``."""
        kept = [c for n, c in zip(detections, mean_confidence, strict=True) if n > 0]
        if area_ratios is None or classes is None:
            return WindowSample(Distribution.of(list(detections)), Distribution.of(kept))
        if not len(area_ratios) == len(classes) == sum(detections):
            raise ValueError(f"{sum(detections)} boxes in the counts, {len(area_ratios)} areas, {len(classes)} "
                             "classes")
        return WindowSample(Distribution.of(list(detections)), Distribution.of(kept),
                            Distribution.of([log_area(a) for a in area_ratios]), Categories.of(list(classes)),
                            len(kept))


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
    """Per signal: (reference mean, current mean), NaN where a side has no observation. ``box_area``: the mean
    log10 area ratio (10 ** it is the geometric mean area ratio); ``class_mix``: the share of ``dominant_class``."""
    empty_shares: tuple[float, float] = (float("nan"), float("nan"))
    """(reference, current) share of frames without boxes."""
    dominant_class: str = ""
    """The reference's most common class ('' without per-box data)."""

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
    dominant = reference.class_mix.most_common()
    for signal in SIGNALS:
        ref, cur = reference.of(signal), current.of(signal)
        if isinstance(ref, Categories):
            means[signal] = (ref.share(dominant), cur.share(dominant))
            used = tuple(m for m in measures if m in CATEGORICAL_MEASURES)
        else:
            means[signal] = (ref.mean(), cur.mean())
            used = measures
        if (not used or reference.signal_frames(signal) < min_frames or current.signal_frames(signal) < min_frames
                or not ref.total or not cur.total):
            continue
        signal_scores = [Score(signal, m, _distance(m, ref, cur, MIN_SCALE[signal], bins), thresholds.of(m))
                         for m in used]
        scores += signal_scores
        if sum(s.above for s in signal_scores) >= min(min_measures, len(used)):
            drifted.append(signal)
    return Comparison("judged", tuple(scores), tuple(drifted), frames, reference_frames, means,
                      (reference.empty_share, current.empty_share), dominant)


def _distance(measure: Measure, reference: Distribution | Categories, current: Distribution | Categories,
              min_scale: float, bins: int) -> float:
    if isinstance(reference, Categories) and isinstance(current, Categories):
        return category_distance(measure, reference, current)
    assert isinstance(reference, Distribution) and isinstance(current, Distribution)
    return distance(measure, reference, current, min_scale, bins)
