"""The experiment report: per-variant summaries, candidate-vs-control tests and the decision (pure).

Decision rule, applied to each candidate against the control at ``alpha / number_of_candidates`` (Bonferroni,
so that several candidates do not multiply the false-positive rate):

1. **not enough data** when either arm has fewer than ``min_samples_per_variant`` inferred frames.
2. **keep control** when a guardrail fails: the candidate's error rate is significantly higher than the
   control's (chi-square, or Fisher's exact test for small counts), above ``guardrails.max_error_rate``, or
   its p95 end-to-end latency is above ``guardrails.max_p95_latency_ms``.
3. The primary metric (``decision.primary_metric``; direction from ``LOWER_IS_BETTER``) is compared by
   Welch's t-test: **keep control** when the CI of ``candidate - control`` lies entirely on the worse side of
   0 or contains 0 (promotion needs evidence; the reason then says how many frames per variant 80 % power
   would need for the observed effect).
4. Non-inferiority: for each metric in ``decision.non_inferiority_margins`` the CI must rule out a loss
   larger than ``margin * |control mean|``: **keep control** when the whole CI is beyond that loss,
   **not enough data** when the CI still reaches it (or the metric has fewer than 2 values per arm).
5. Otherwise **promote**.

Across candidates: promote the qualifying candidate with the largest improvement of the primary metric;
else **not enough data** if any candidate needs more data; else **keep control**.

Mann-Whitney U p-values are reported next to Welch's as a robustness check; the rule uses Welch's CI.

Renderings of a report (terminal table, HTML page with SVG charts) are in :mod:`experiments.rendering`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from experiments.config import LOWER_IS_BETTER, Experiment
from experiments.stats import (
    InsufficientData,
    MeanDifference,
    PairedTest,
    ProportionTest,
    RankTest,
    SampleSizeCheck,
    error_rate_test,
    mann_whitney,
    paired_test,
    sample_size_check,
    welch_test,
)
from foundation.errors import CamcountError

Verdict = Literal["promote", "keep control", "not enough data"]
Outcome = Literal["better", "worse", "no difference"]

METRICS: tuple[str, ...] = tuple(LOWER_IS_BETTER)
UNITS = {"infer_ms": "ms", "e2e_ms": "ms", "detections_per_frame": "", "mean_confidence": "",
         "crossings_per_camera_hour": ""}
HISTOGRAM_METRICS = ("infer_ms", "e2e_ms", "detections_per_frame", "crossings_per_camera_hour")
HISTOGRAM_BINS = 30
# Fewer cameras than this in an arm makes per-frame p-values optimistic (frames of a camera are correlated).
MIN_CAMERAS_FOR_FRAME_TESTS = 20


class ReportError(CamcountError, ValueError):
    """Samples do not fit the experiment (missing variant, misaligned arrays); the message says what to fix."""

    code = "EXP_001"
    detail = "report-failed"


@dataclass(frozen=True, eq=False)  # arrays have no single truth value to compare by
class VariantSamples:
    """What one variant produced, as read from ``inference_log`` and ``crossing_events``.

    Invariants: ``infer_ms``, ``e2e_ms``, ``detections``, ``mean_confidence`` and ``error`` are aligned per
    inferred frame (status ok or error; skipped frames are not in them); ``crossings_per_camera_hour`` has one
    entry per camera-hour the variant inferred, zeros included; ``cameras`` counts distinct cameras.
    """

    infer_ms: NDArray[np.float64]
    e2e_ms: NDArray[np.float64]
    detections: NDArray[np.float64]
    mean_confidence: NDArray[np.float64]
    error: NDArray[np.bool_]
    crossings_per_camera_hour: NDArray[np.float64]
    cameras: int

    def __post_init__(self) -> None:
        for name in ("infer_ms", "e2e_ms", "detections", "mean_confidence", "crossings_per_camera_hour"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.float64).ravel())
        object.__setattr__(self, "error", np.asarray(self.error, dtype=np.bool_).ravel())
        lengths = {name: getattr(self, name).size
                   for name in ("infer_ms", "e2e_ms", "detections", "mean_confidence", "error")}
        if len(set(lengths.values())) > 1:
            raise ReportError(f"per-frame arrays must be aligned by frame; got lengths {lengths}")

    @property
    def frames(self) -> int:
        return int(self.error.size)

    @property
    def errors(self) -> int:
        return int(self.error.sum())

    def metric(self, name: str) -> NDArray[np.float64]:
        """Values of ``name``: per ok frame; mean_confidence only over ok frames with detections."""
        ok = ~self.error
        if name == "infer_ms":
            return self.infer_ms[ok]
        if name == "e2e_ms":
            return self.e2e_ms[ok]
        if name == "detections_per_frame":
            return self.detections[ok]
        if name == "mean_confidence":
            return self.mean_confidence[ok & (self.detections > 0)]
        if name == "crossings_per_camera_hour":
            return self.crossings_per_camera_hour
        raise ReportError(f"unknown metric {name!r}; use one of {METRICS}")


@dataclass(frozen=True)
class Distribution:
    """Mean and percentiles of one metric in one variant."""

    n: int
    mean: float
    p50: float
    p95: float
    p99: float


@dataclass(frozen=True)
class ShadowSamples:
    """Shadow mode's paired data: entry i of every array is the same frame under control and ``candidate``."""

    candidate: str
    control_detections: NDArray[np.float64]
    candidate_detections: NDArray[np.float64]
    matched_boxes: NDArray[np.float64]
    control_infer_ms: NDArray[np.float64]
    candidate_infer_ms: NDArray[np.float64]


@dataclass(frozen=True)
class ShadowSummary:
    """Agreement of boxes and counts on identical frames, and paired tests of ``candidate - control``.

    ``box_agreement`` is the pooled F1 of matched boxes (same class, IoU >= 0.5): 2 * matched / (control +
    candidate boxes); ``equal_count_share`` the share of frames where both found the same number of boxes.
    """

    candidate: str
    pairs: int
    box_agreement: float | None
    equal_count_share: float | None
    detections: PairedTest | None
    infer_ms: PairedTest | None


def summarise_shadow(shadow: ShadowSamples, alpha: float) -> ShadowSummary:
    pairs = len(shadow.control_detections)
    boxes = float(shadow.control_detections.sum() + shadow.candidate_detections.sum())

    def paired(control: NDArray[np.float64], candidate: NDArray[np.float64]) -> PairedTest | None:
        try:
            return paired_test(control, candidate, alpha)
        except InsufficientData:
            return None

    return ShadowSummary(
        candidate=shadow.candidate, pairs=pairs,
        box_agreement=2.0 * float(shadow.matched_boxes.sum()) / boxes if boxes else None,
        equal_count_share=float(np.mean(shadow.control_detections == shadow.candidate_detections)) if pairs else None,
        detections=paired(shadow.control_detections, shadow.candidate_detections),
        infer_ms=paired(shadow.control_infer_ms, shadow.candidate_infer_ms),
    )


@dataclass(frozen=True)
class VariantSummary:
    variant: str
    model: str
    frames: int
    errors: int
    error_rate: float | None
    cameras: int
    camera_hours: int
    metrics: dict[str, Distribution | None]


@dataclass(frozen=True)
class MetricComparison:
    """``candidate - control`` on one metric; ``outcome`` judged from Welch's CI at the comparison's alpha."""

    metric: str
    lower_is_better: bool
    welch: MeanDifference
    mann_whitney: RankTest
    relative_difference: float | None
    outcome: Outcome


@dataclass(frozen=True)
class Comparison:
    candidate: str
    alpha: float
    errors: ProportionTest | None
    metrics: dict[str, MetricComparison]
    sample_size: SampleSizeCheck
    verdict: Verdict
    reason: str
    output_drift: dict[str, float] = dataclasses.field(default_factory=dict)
    """Jensen-Shannon distance of the candidate's outputs from the control's, per signal (``detections_per_frame``,
    ``mean_confidence``), as measured by the caller; empty when not measured."""


@dataclass(frozen=True)
class BoxStats:
    """Box plot of a metric: whiskers at p5 and p95, box from p25 to p75."""

    p5: float
    p25: float
    p50: float
    p75: float
    p95: float


@dataclass(frozen=True)
class Histogram:
    """Counts of one metric per variant on shared bin ``edges`` (values outside fall into the end bins)."""

    metric: str
    edges: tuple[float, ...]
    counts: dict[str, tuple[int, ...]]
    boxes: dict[str, BoxStats]


@dataclass(frozen=True)
class Report:
    experiment: str
    control: str
    alpha: float
    primary_metric: str
    variants: tuple[VariantSummary, ...]
    comparisons: tuple[Comparison, ...]
    decision: Verdict
    promote: str | None
    reason: str
    caveats: tuple[str, ...]
    histograms: tuple[Histogram, ...]
    shadow: ShadowSummary | None = None

    def comparison(self, candidate: str) -> Comparison:
        for comparison in self.comparisons:
            if comparison.candidate == candidate:
                return comparison
        raise KeyError(f"no comparison for {candidate!r}; candidates are {[c.candidate for c in self.comparisons]}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data; non-finite floats become None."""
        return _jsonable(dataclasses.asdict(self))

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def build_report(experiment: Experiment, samples: dict[str, VariantSamples],
                 shadow: ShadowSamples | None = None,
                 output_drift: dict[str, dict[str, float]] | None = None) -> Report:
    """Summarise every variant, compare each candidate with the control and decide (module docstring).

    Shadow pairs, when given, are summarised alongside; they inform, the decision rule does not use them.
    ``output_drift`` (candidate -> signal -> Jensen-Shannon distance from the control's outputs, measured by the
    caller, e.g. ``sinks.experiment_samples``) is reported, and holds a candidate beyond
    ``guardrails.max_output_drift``.
    """
    missing = [name for name in experiment.variant_names if name not in samples]
    if missing:
        raise ReportError(f"no samples for variants {missing}; pass an empty VariantSamples for a variant "
                          "without data")
    summaries = tuple(_summarise(experiment, name, samples[name]) for name in experiment.variant_names)
    alpha = experiment.alpha / len(experiment.candidates)  # Bonferroni over candidates
    control = samples[experiment.control]
    comparisons = tuple(_compare(experiment, variant.name, control, samples[variant.name], alpha,
                                 (output_drift or {}).get(variant.name, {}))
                        for variant in experiment.candidates)
    decision, promote, reason = _overall(experiment, comparisons)
    return Report(
        experiment=experiment.name, control=experiment.control, alpha=experiment.alpha,
        primary_metric=experiment.decision.primary_metric, variants=summaries, comparisons=comparisons,
        decision=decision, promote=promote, reason=reason, caveats=_caveats(experiment, samples, comparisons),
        histograms=tuple(h for metric in HISTOGRAM_METRICS if (h := _histogram(metric, samples)) is not None),
        shadow=summarise_shadow(shadow, experiment.alpha) if shadow is not None else None,
    )


def _summarise(experiment: Experiment, name: str, samples: VariantSamples) -> VariantSummary:
    metrics: dict[str, Distribution | None] = {}
    for metric in METRICS:
        values = samples.metric(metric)
        metrics[metric] = None if values.size == 0 else Distribution(
            n=int(values.size), mean=float(values.mean()),
            p50=float(np.percentile(values, 50)), p95=float(np.percentile(values, 95)),
            p99=float(np.percentile(values, 99)),
        )
    return VariantSummary(
        variant=name, model=experiment.variant(name).model, frames=samples.frames, errors=samples.errors,
        error_rate=samples.errors / samples.frames if samples.frames else None, cameras=samples.cameras,
        camera_hours=int(samples.crossings_per_camera_hour.size), metrics=metrics,
    )


def _compare_metric(metric: str, control: VariantSamples, candidate: VariantSamples,
                    alpha: float) -> MetricComparison | None:
    a, b = control.metric(metric), candidate.metric(metric)
    try:
        welch = welch_test(a, b, alpha)
        rank = mann_whitney(a, b)
    except InsufficientData:
        return None
    lower_is_better = LOWER_IS_BETTER[metric]
    improvement_low, improvement_high = sorted((-welch.ci_low, -welch.ci_high) if lower_is_better
                                               else (welch.ci_low, welch.ci_high))
    outcome: Outcome = "better" if improvement_low > 0 else "worse" if improvement_high < 0 else "no difference"
    return MetricComparison(
        metric=metric, lower_is_better=lower_is_better, welch=welch, mann_whitney=rank,
        relative_difference=welch.difference / welch.control_mean if welch.control_mean else None,
        outcome=outcome,
    )


def _compare(experiment: Experiment, name: str, control: VariantSamples, candidate: VariantSamples,
             alpha: float, output_drift: dict[str, float]) -> Comparison:
    metrics = {metric: comparison for metric in METRICS
               if (comparison := _compare_metric(metric, control, candidate, alpha)) is not None}
    primary = experiment.decision.primary_metric
    sample_size = sample_size_check(control.metric(primary), candidate.metric(primary),
                                    experiment.min_samples_per_variant, alpha)
    errors = (error_rate_test(control.errors, control.frames, candidate.errors, candidate.frames, alpha)
              if control.frames and candidate.frames else None)
    verdict, reason = _verdict(experiment, name, control, candidate, metrics, errors, sample_size, alpha,
                               output_drift)
    return Comparison(candidate=name, alpha=alpha, errors=errors, metrics=metrics, sample_size=sample_size,
                      verdict=verdict, reason=reason, output_drift=dict(output_drift))


def _verdict(
    experiment: Experiment,
    name: str,
    control: VariantSamples,
    candidate: VariantSamples,
    metrics: dict[str, MetricComparison],
    errors: ProportionTest | None,
    sample_size: SampleSizeCheck,
    alpha: float,
    output_drift: dict[str, float] | None = None,
) -> tuple[Verdict, str]:
    need = experiment.min_samples_per_variant
    small = [(label, samples.frames) for label, samples in ((experiment.control, control), (name, candidate))
             if samples.frames < need]
    if small or errors is None:
        have = ", ".join(f"{label} has {frames}" for label, frames in small)
        return "not enough data", f"{have} frames; each variant needs {need} (min_samples_per_variant)"
    guardrails = experiment.guardrails
    if errors.difference > 0 and errors.p_value < alpha:
        return "keep control", (f"{name} fails more often: error rate {errors.candidate_rate:.2%} vs "
                                f"{errors.control_rate:.2%} (p={errors.p_value:.3g}, {errors.method})")
    if errors.candidate_rate > guardrails.max_error_rate:
        return "keep control", (f"{name} error rate {errors.candidate_rate:.2%} is above the guardrail "
                                f"max_error_rate {guardrails.max_error_rate:.2%}")
    e2e = candidate.metric("e2e_ms")
    if e2e.size and (p95 := float(np.percentile(e2e, 95))) > guardrails.max_p95_latency_ms:
        return "keep control", (f"{name} p95 end-to-end latency {p95:.1f} ms is above the guardrail "
                                f"max_p95_latency_ms {guardrails.max_p95_latency_ms:g} ms")
    if guardrails.max_output_drift is not None and output_drift:
        signal, value = max(output_drift.items(), key=lambda item: item[1])
        if value > guardrails.max_output_drift:
            return "keep control", (f"{name} is held: its outputs drift from the control's beyond the guardrail "
                                    f"max_output_drift {guardrails.max_output_drift:g} (Jensen-Shannon {value:.3f} "
                                    f"on {signal})")
    primary = experiment.decision.primary_metric
    comparison = metrics.get(primary)
    if comparison is None:
        return "not enough data", f"{primary} has fewer than 2 values in an arm"
    effect = _describe(comparison)
    if comparison.outcome == "worse":
        return "keep control", f"{name} is significantly worse on {primary}: {effect}"
    if comparison.outcome == "no difference":
        needed = ("the observed difference is zero" if math.isinf(sample_size.required_per_arm) else
                  f"detecting the observed difference at 80% power needs about "
                  f"{sample_size.required_per_arm:,.0f} frames per variant")
        return "keep control", f"no significant difference on {primary} ({effect}); {needed}"
    for metric, margin in experiment.decision.non_inferiority_margins.items():
        if metric == primary:
            continue
        check = metrics.get(metric)
        if check is None:
            return "not enough data", f"non-inferiority on {metric} cannot be checked: fewer than 2 values per arm"
        allowed = margin * abs(check.welch.control_mean)
        worst, best = ((check.welch.ci_high, check.welch.ci_low) if check.lower_is_better
                       else (-check.welch.ci_low, -check.welch.ci_high))
        # worst/best: the largest/smallest loss (in the metric's bad direction) inside the CI.
        if best > allowed:
            return "keep control", (f"{name} loses more than the {margin:.0%} non-inferiority margin on {metric}: "
                                    f"{_describe(check)}")
        if worst > allowed:
            return "not enough data", (f"{name} is better on {primary} ({effect}) but a loss beyond the {margin:.0%} "
                                       f"margin on {metric} is not ruled out yet ({_describe(check)})")
    return "promote", f"{name} is significantly better on {primary} ({effect}) and within the guardrails"


def _describe(comparison: MetricComparison) -> str:
    welch = comparison.welch
    unit = f" {UNITS[comparison.metric]}" if UNITS[comparison.metric] else ""
    relative = f", {comparison.relative_difference:+.1%}" if comparison.relative_difference is not None else ""
    return (f"{welch.difference:+.3g}{unit}{relative}, CI {welch.ci_low:+.3g} to {welch.ci_high:+.3g}, "
            f"p={welch.p_value:.3g}")


def _overall(experiment: Experiment, comparisons: tuple[Comparison, ...]) -> tuple[Verdict, str | None, str]:
    primary = experiment.decision.primary_metric
    winners = [c for c in comparisons if c.verdict == "promote"]
    if winners:
        sign = -1.0 if LOWER_IS_BETTER[primary] else 1.0
        best = max(winners, key=lambda c: sign * c.metrics[primary].welch.difference)
        return "promote", best.candidate, best.reason
    pending = [c for c in comparisons if c.verdict == "not enough data"]
    chosen = pending or list(comparisons)
    verdict: Verdict = "not enough data" if pending else "keep control"
    return verdict, None, "; ".join(f"{c.candidate}: {c.reason}" for c in chosen)


def _caveats(experiment: Experiment, samples: dict[str, VariantSamples],
             comparisons: tuple[Comparison, ...]) -> tuple[str, ...]:
    caveats = []
    few = {name: s.cameras for name, s in samples.items() if s.cameras < MIN_CAMERAS_FOR_FRAME_TESTS}
    if few:
        caveats.append(f"few cameras per variant {few}: frames of one camera are correlated, so per-frame "
                       "p-values are optimistic; prefer more cameras or time_slot assignment")
    for comparison in comparisons:
        for metric, check in comparison.metrics.items():
            if (check.welch.p_value < comparison.alpha) != (check.mann_whitney.p_value < comparison.alpha):
                caveats.append(f"{comparison.candidate} {metric}: Welch (p={check.welch.p_value:.3g}) and "
                               f"Mann-Whitney (p={check.mann_whitney.p_value:.3g}) disagree; look at the "
                               "distributions")
    return tuple(caveats)


def _histogram(metric: str, samples: dict[str, VariantSamples]) -> Histogram | None:
    values = {name: s.metric(metric) for name, s in samples.items() if s.metric(metric).size}
    if not values:
        return None
    pooled = np.concatenate(list(values.values()))
    low, high = (float(q) for q in np.percentile(pooled, [0.5, 99.5]))
    if high <= low:
        high = low + 1.0
    edges = np.linspace(low, high, HISTOGRAM_BINS + 1)
    counts = {name: tuple(int(c) for c in np.histogram(np.clip(v, low, high), bins=edges)[0])
              for name, v in values.items()}
    boxes = {name: BoxStats(*(float(q) for q in np.percentile(v, [5, 25, 50, 75, 95])))
             for name, v in values.items()}
    return Histogram(metric=metric, edges=tuple(float(e) for e in edges), counts=counts, boxes=boxes)
