"""Statistical tests for comparing a candidate variant to the control (pure numpy/scipy).

Conventions shared by every function here:

- differences are always ``candidate - control``;
- confidence intervals are two-sided at level ``1 - alpha``;
- inputs are finite 1-d samples; an arm that is too small for the test raises :class:`InsufficientData`;
- observations are treated as independent. Per-frame data from one camera are not (frames of a camera are
  correlated, and camera assignment randomises cameras, not frames), so p-values on per-frame metrics are
  optimistic when few cameras carry most frames; that caveat belongs in any report built on them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from foundation.errors import CamcountError

# Fisher's exact test replaces chi-square when any expected cell count of the 2x2 table is below this
# (Cochran's rule).
MIN_EXPECTED_COUNT = 5.0
DEFAULT_POWER = 0.8


class InsufficientData(CamcountError, ValueError):
    """A sample is too small or malformed for a test; the message names the arm and the size it needs."""

    code = "EXP_003"
    detail = "insufficient-data"


@dataclass(frozen=True)
class MeanDifference:
    """Welch's unequal-variance t-test and the Welch-Satterthwaite CI of ``candidate_mean - control_mean``."""

    n_control: int
    n_candidate: int
    control_mean: float
    candidate_mean: float
    difference: float
    ci_low: float
    ci_high: float
    t_statistic: float
    df: float
    p_value: float


@dataclass(frozen=True)
class RankTest:
    """Two-sided Mann-Whitney U; ``superiority`` = P(candidate > control) + P(tie) / 2 (0.5: no shift)."""

    n_control: int
    n_candidate: int
    u_statistic: float
    superiority: float
    p_value: float


@dataclass(frozen=True)
class ProportionTest:
    """Difference of error rates with a Newcombe (Wilson score) CI; p from chi-square or Fisher's exact test."""

    control_events: int
    control_total: int
    candidate_events: int
    candidate_total: int
    control_rate: float
    candidate_rate: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    method: Literal["chi-square", "fisher"]


@dataclass(frozen=True)
class PairedTest:
    """Paired comparison of the same frames under both variants (shadow data): paired t and Wilcoxon."""

    n: int
    mean_difference: float
    ci_low: float
    ci_high: float
    t_statistic: float
    t_p_value: float
    wilcoxon_statistic: float
    wilcoxon_p_value: float


@dataclass(frozen=True)
class SampleSizeCheck:
    """Whether both arms reached ``min_samples``, and what 80 %-power detection of the observed effect needs.

    ``enough``: both arms hold at least ``min_samples``. ``powered``: both hold at least ``required_per_arm``,
    which is ``inf`` when the observed difference is zero (no sample size detects it).
    """

    n_control: int
    n_candidate: int
    min_samples: int
    required_per_arm: float
    power: float
    enough: bool
    powered: bool


def as_sample(values: ArrayLike, label: str, minimum: int = 2) -> NDArray[np.float64]:
    """``values`` as a finite float64 vector of at least ``minimum`` entries, or InsufficientData."""
    array = np.asarray(values, dtype=np.float64).ravel()
    if not np.all(np.isfinite(array)):
        raise InsufficientData(f"{label} holds NaN or infinite values; drop them before testing")
    if array.size < minimum:
        raise InsufficientData(f"{label} has {array.size} values; this test needs at least {minimum}")
    return array


def welch_test(control: ArrayLike, candidate: ArrayLike, alpha: float = 0.05) -> MeanDifference:
    """Welch's t-test (``scipy.stats.ttest_ind(equal_var=False)``) with its Welch-Satterthwaite CI.

    CI: ``d ± t_{1-alpha/2, df} * se`` with ``se² = s_c²/n_c + s_a²/n_a`` and
    ``df = se⁴ / ((s_c²/n_c)²/(n_c-1) + (s_a²/n_a)²/(n_a-1))``. When both arms are constant the CI collapses
    to the observed difference and p is 1 for equal constants, 0 otherwise.
    """
    a = as_sample(control, "control")
    b = as_sample(candidate, "candidate")
    var_a, var_b = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    difference = float(b.mean() - a.mean())
    se = math.sqrt(var_a + var_b)
    if se == 0.0:
        return MeanDifference(
            n_control=a.size, n_candidate=b.size, control_mean=float(a.mean()), candidate_mean=float(b.mean()),
            difference=difference, ci_low=difference, ci_high=difference,
            t_statistic=0.0 if difference == 0.0 else math.copysign(math.inf, difference),
            df=float(a.size + b.size - 2), p_value=1.0 if difference == 0.0 else 0.0,
        )
    df = se**4 / (var_a**2 / (a.size - 1) + var_b**2 / (b.size - 1))
    half_width = float(stats.t.ppf(1.0 - alpha / 2.0, df)) * se
    result = stats.ttest_ind(b, a, equal_var=False)
    return MeanDifference(
        n_control=a.size, n_candidate=b.size, control_mean=float(a.mean()), candidate_mean=float(b.mean()),
        difference=difference, ci_low=difference - half_width, ci_high=difference + half_width,
        t_statistic=float(result.statistic), df=float(df), p_value=float(result.pvalue),
    )


def mann_whitney(control: ArrayLike, candidate: ArrayLike) -> RankTest:
    """Two-sided Mann-Whitney U test (``scipy.stats.mannwhitneyu``) of candidate against control."""
    a = as_sample(control, "control", minimum=1)
    b = as_sample(candidate, "candidate", minimum=1)
    result = stats.mannwhitneyu(b, a, alternative="two-sided")
    u = float(result.statistic)
    return RankTest(
        n_control=a.size, n_candidate=b.size, u_statistic=u, superiority=u / (a.size * b.size),
        p_value=float(result.pvalue),
    )


def wilson_interval(events: int, total: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval of the proportion ``events / total``."""
    if total <= 0:
        raise InsufficientData("a proportion needs at least one trial; got total=0")
    z = float(stats.norm.ppf(1.0 - alpha / 2.0))
    p = events / total
    denominator = 1.0 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z / denominator * math.sqrt(p * (1.0 - p) / total + z * z / (4 * total * total))
    return max(0.0, centre - half), min(1.0, centre + half)


def error_rate_test(
    control_events: int, control_total: int, candidate_events: int, candidate_total: int, alpha: float = 0.05
) -> ProportionTest:
    """Compare two error rates: chi-square with Yates' correction on the 2x2 table, Fisher's exact test when an
    expected count is below ``MIN_EXPECTED_COUNT`` (that includes "no errors in either arm": p = 1).

    CI: Newcombe's hybrid score interval (method 10), which stays sensible for rates near 0.
    """
    for label, events, total in (("control", control_events, control_total),
                                 ("candidate", candidate_events, candidate_total)):
        if total < 1 or not 0 <= events <= total:
            raise InsufficientData(f"{label} has {events} errors in {total} frames; need 0 <= errors <= frames >= 1")
    table = np.array([[candidate_events, candidate_total - candidate_events],
                      [control_events, control_total - control_events]], dtype=np.float64)
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    method: Literal["chi-square", "fisher"]
    if expected.min() < MIN_EXPECTED_COUNT:
        method, p_value = "fisher", float(stats.fisher_exact(table.astype(np.int64)).pvalue)
    else:
        method, p_value = "chi-square", float(stats.chi2_contingency(table, correction=True).pvalue)
    p_control, p_candidate = control_events / control_total, candidate_events / candidate_total
    low_c, high_c = wilson_interval(control_events, control_total, alpha)
    low_a, high_a = wilson_interval(candidate_events, candidate_total, alpha)
    difference = p_candidate - p_control
    return ProportionTest(
        control_events=control_events, control_total=control_total,
        candidate_events=candidate_events, candidate_total=candidate_total,
        control_rate=p_control, candidate_rate=p_candidate, difference=difference,
        ci_low=difference - math.hypot(p_candidate - low_a, high_c - p_control),
        ci_high=difference + math.hypot(high_a - p_candidate, p_control - low_c),
        p_value=p_value, method=method,
    )


def paired_test(control: ArrayLike, candidate: ArrayLike, alpha: float = 0.05) -> PairedTest:
    """Paired t-test (``scipy.stats.ttest_rel``) and Wilcoxon signed-rank test on ``candidate - control``.

    ``control[i]`` and ``candidate[i]`` must be the same frame. All-zero differences give p = 1 for both tests.
    """
    a = as_sample(control, "control")
    b = as_sample(candidate, "candidate")
    if a.size != b.size:
        raise InsufficientData(f"paired samples differ in length ({a.size} vs {b.size}); pair them by frame first")
    differences = b - a
    mean = float(differences.mean())
    se = float(differences.std(ddof=1)) / math.sqrt(differences.size)
    if se == 0.0:
        return PairedTest(
            n=a.size, mean_difference=mean, ci_low=mean, ci_high=mean,
            t_statistic=0.0 if mean == 0.0 else math.copysign(math.inf, mean),
            t_p_value=1.0 if mean == 0.0 else 0.0, wilcoxon_statistic=0.0,
            wilcoxon_p_value=1.0 if mean == 0.0 else 0.0,
        )
    half_width = float(stats.t.ppf(1.0 - alpha / 2.0, differences.size - 1)) * se
    t_result = stats.ttest_rel(b, a)
    w_result = stats.wilcoxon(differences, zero_method="wilcox")
    return PairedTest(
        n=a.size, mean_difference=mean, ci_low=mean - half_width, ci_high=mean + half_width,
        t_statistic=float(t_result.statistic), t_p_value=float(t_result.pvalue),
        wilcoxon_statistic=float(w_result.statistic), wilcoxon_p_value=float(w_result.pvalue),
    )


def required_samples_per_arm(
    control: ArrayLike, candidate: ArrayLike, alpha: float = 0.05, power: float = DEFAULT_POWER
) -> float:
    """Per-arm sample size for a two-sided test at ``alpha`` to detect the observed mean difference with
    ``power``, by the normal approximation ``(z_{1-alpha/2} + z_power)² (s_c² + s_a²) / d²``; ``inf`` if d = 0.
    """
    a = as_sample(control, "control")
    b = as_sample(candidate, "candidate")
    difference = float(b.mean() - a.mean())
    if difference == 0.0:
        return math.inf
    z = float(stats.norm.ppf(1.0 - alpha / 2.0) + stats.norm.ppf(power))
    return math.ceil(z * z * (a.var(ddof=1) + b.var(ddof=1)) / (difference * difference))


def sample_size_check(
    control: ArrayLike, candidate: ArrayLike, min_samples: int, alpha: float = 0.05, power: float = DEFAULT_POWER
) -> SampleSizeCheck:
    """The minimum-sample rule plus the power estimate for the observed effect (arms of < 2 values: ``inf``)."""
    a = np.asarray(control, dtype=np.float64).ravel()
    b = np.asarray(candidate, dtype=np.float64).ravel()
    required = required_samples_per_arm(a, b, alpha, power) if min(a.size, b.size) >= 2 else math.inf
    smaller = min(a.size, b.size)
    return SampleSizeCheck(
        n_control=a.size, n_candidate=b.size, min_samples=min_samples, required_per_arm=required, power=power,
        enough=smaller >= min_samples, powered=smaller >= required,
    )
