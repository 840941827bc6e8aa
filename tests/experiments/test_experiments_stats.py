"""Statistical tests agree with scipy on fixed data, and the Welch CI with a hand computation."""

import math

import numpy as np
import pytest
from scipy import stats

from experiments.stats import (
    InsufficientData,
    error_rate_test,
    mann_whitney,
    paired_test,
    required_samples_per_arm,
    sample_size_check,
    welch_test,
)

CONTROL = [1.0, 2.0, 3.0, 4.0, 5.0]
CANDIDATE = [2.0, 4.0, 6.0, 8.0, 10.0, 12.0]


def test_welch_p_value_and_statistic_match_scipy():
    result = welch_test(CONTROL, CANDIDATE)
    expected = stats.ttest_ind(CANDIDATE, CONTROL, equal_var=False)
    assert result.t_statistic == pytest.approx(expected.statistic)
    assert result.p_value == pytest.approx(expected.pvalue)


def test_welch_ci_matches_the_hand_computation():
    # means 3 and 7; variances of the mean 2.5/5 = 0.5 and 14/6 = 7/3; se² = 17/6
    se2 = 0.5 + 7 / 3
    df = se2**2 / (0.5**2 / 4 + (7 / 3) ** 2 / 5)  # Welch-Satterthwaite: 6.9722...
    half = stats.t.ppf(0.975, df) * math.sqrt(se2)
    result = welch_test(CONTROL, CANDIDATE, alpha=0.05)
    assert result.difference == pytest.approx(4.0)
    assert result.df == pytest.approx(6.97222, abs=1e-4)
    assert (result.ci_low, result.ci_high) == pytest.approx((4.0 - half, 4.0 + half))
    assert (result.ci_low, result.ci_high) == pytest.approx((0.0165, 7.9835), abs=1e-4)


def test_welch_with_two_constant_arms_has_a_zero_width_ci():
    result = welch_test([5.0, 5.0, 5.0], [6.0, 6.0])
    assert (result.ci_low, result.ci_high, result.p_value) == (1.0, 1.0, 0.0)


def test_welch_refuses_an_arm_of_one_value():
    with pytest.raises(InsufficientData, match="control has 1 values"):
        welch_test([1.0], CANDIDATE)


def test_welch_refuses_nan():
    with pytest.raises(InsufficientData, match="NaN"):
        welch_test([1.0, float("nan")], CANDIDATE)


def test_mann_whitney_matches_scipy():
    result = mann_whitney(CONTROL, CANDIDATE)
    expected = stats.mannwhitneyu(CANDIDATE, CONTROL, alternative="two-sided")
    assert (result.u_statistic, result.p_value) == pytest.approx((expected.statistic, expected.pvalue))
    assert result.superiority == pytest.approx(expected.statistic / 30)


def test_error_rates_with_large_counts_use_chi_square_like_scipy():
    result = error_rate_test(30, 1000, 55, 1000)
    expected = stats.chi2_contingency([[55, 945], [30, 970]])
    assert result.method == "chi-square"
    assert result.p_value == pytest.approx(expected.pvalue)
    assert result.difference == pytest.approx(0.025)
    assert result.ci_low < 0.025 < result.ci_high


def test_error_rates_with_small_expected_counts_use_fisher_like_scipy():
    result = error_rate_test(0, 200, 4, 200)
    assert result.method == "fisher"
    assert result.p_value == pytest.approx(stats.fisher_exact([[4, 196], [0, 200]]).pvalue)


def test_no_errors_in_either_arm_is_no_evidence():
    result = error_rate_test(0, 500, 0, 500)
    assert (result.p_value, result.difference) == (1.0, 0.0)


def test_paired_tests_match_scipy():
    rng = np.random.default_rng(3)
    control = rng.normal(20, 2, 50)
    candidate = control + rng.normal(0.5, 1, 50)
    result = paired_test(control, candidate)
    assert result.t_p_value == pytest.approx(stats.ttest_rel(candidate, control).pvalue)
    assert result.wilcoxon_p_value == pytest.approx(stats.wilcoxon(candidate - control).pvalue)
    assert result.ci_low < result.mean_difference < result.ci_high


def test_paired_samples_must_have_equal_length():
    with pytest.raises(InsufficientData, match="pair them by frame"):
        paired_test([1.0, 2.0, 3.0], [1.0, 2.0])


def test_required_samples_reproduce_the_textbook_393_per_arm():
    # sd 1 in both arms, difference 0.2, alpha 0.05, 80 % power: (1.96 + 0.8416)² * 2 / 0.04 = 392.4 -> 393
    control = np.array([-1.0, 1.0] * 50) * math.sqrt(99 / 100)  # sample sd (ddof=1) exactly 1
    assert required_samples_per_arm(control, control + 0.2) == 393


def test_sample_size_check_flags_arms_below_the_minimum():
    check = sample_size_check(np.arange(100.0), np.arange(100.0) + 1, min_samples=500)
    assert not check.enough and check.n_control == 100


def test_zero_observed_difference_needs_infinitely_many_samples():
    assert required_samples_per_arm(CONTROL, CONTROL) == math.inf
