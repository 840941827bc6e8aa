"""The report: per-variant summaries and statistical honesty of the decision."""

import dataclasses
import json

import numpy as np
import pytest

from experiments.report import ReportError, VariantSamples, build_report
from tests.experiment_builders import samples
from tests.experiment_builders import speed_experiment as experiment


def test_summary_reports_frames_error_rate_and_latency_percentiles():
    rng = np.random.default_rng(0)
    report = build_report(experiment(), {"a": samples(rng, 2000), "b": samples(rng, 2000)})
    summary = report.variants[0]
    assert (summary.variant, summary.frames, summary.camera_hours) == ("a", 2000, 200)
    assert summary.metrics["infer_ms"].p50 == pytest.approx(20.0, rel=0.05)
    assert summary.metrics["infer_ms"].p50 < summary.metrics["infer_ms"].p95 < summary.metrics["infer_ms"].p99


def test_candidate_slower_by_2ms_is_detected_and_control_is_kept():
    rng = np.random.default_rng(1)
    report = build_report(experiment(), {"a": samples(rng, 2000), "b": samples(rng, 2000, slower_ms=2.0)})
    latency = report.comparison("b").metrics["infer_ms"]
    assert latency.outcome == "worse"
    assert latency.welch.ci_low < 2.0 < latency.welch.ci_high
    assert report.decision == "keep control" and "significantly worse on infer_ms" in report.reason


def test_candidate_faster_by_2ms_with_equal_detections_is_promoted():
    rng = np.random.default_rng(2)
    report = build_report(experiment(), {"a": samples(rng, 2000), "b": samples(rng, 2000, slower_ms=-2.0)})
    assert (report.decision, report.promote) == ("promote", "b")


def test_a_a_tests_flag_a_difference_in_about_alpha_of_the_runs():
    rng = np.random.default_rng(2024)
    runs = 500  # the bounds are about 3 binomial standard deviations around 5 %
    flagged = sum(
        build_report(experiment(), {"a": samples(rng, 500), "b": samples(rng, 500)})
        .comparison("b").metrics["infer_ms"].outcome != "no difference"
        for _ in range(runs)
    )
    assert 0.02 <= flagged / runs <= 0.08


def test_below_min_samples_the_verdict_is_not_enough_data():
    rng = np.random.default_rng(3)
    report = build_report(experiment(), {"a": samples(rng, 2000), "b": samples(rng, 300, slower_ms=-5.0)})
    assert report.decision == "not enough data"
    assert "b has 300 frames; each variant needs 500" in report.reason


def test_faster_candidate_losing_detections_beyond_the_margin_is_rejected():
    rng = np.random.default_rng(4)
    report = build_report(experiment(), {"a": samples(rng, 2000),
                                         "b": samples(rng, 2000, slower_ms=-2.0, detections=2.4)})
    assert report.decision == "keep control" and "non-inferiority margin on detections_per_frame" in report.reason


def test_faster_candidate_with_more_errors_is_rejected():
    rng = np.random.default_rng(5)
    report = build_report(experiment(), {"a": samples(rng, 2000),
                                         "b": samples(rng, 2000, slower_ms=-2.0, error_rate=0.04)})
    assert report.decision == "keep control" and "fails more often" in report.reason


def test_faster_candidate_over_the_p95_latency_guardrail_is_rejected():
    rng = np.random.default_rng(6)
    report = build_report(experiment(guardrails={"max_p95_latency_ms": 30.0}),
                          {"a": samples(rng, 2000), "b": samples(rng, 2000, slower_ms=-2.0)})
    assert report.decision == "keep control" and "max_p95_latency_ms" in report.reason


def test_no_significant_difference_keeps_control_and_says_how_much_data_would_tell():
    control = samples(np.random.default_rng(7), 600)
    candidate = dataclasses.replace(control, infer_ms=control.infer_ms - 0.01)
    report = build_report(experiment(), {"a": control, "b": candidate})
    assert report.decision == "keep control"
    assert "no significant difference on infer_ms" in report.reason and "frames per variant" in report.reason


def test_several_candidates_share_alpha_bonferroni():
    rng = np.random.default_rng(8)
    three = experiment(variants=[{"name": n, "model": f"yolo@{i}.0.0"} for i, n in enumerate("abc", 1)])
    report = build_report(three, {name: samples(rng, 1000) for name in "abc"})
    assert [c.alpha for c in report.comparisons] == [0.025, 0.025]


def test_few_cameras_are_named_as_a_caveat():
    rng = np.random.default_rng(9)
    report = build_report(experiment(), {"a": samples(rng, 1000, cameras=3), "b": samples(rng, 1000)})
    assert any("few cameras" in caveat for caveat in report.caveats)


def test_samples_for_every_variant_are_required():
    rng = np.random.default_rng(10)
    with pytest.raises(ReportError, match=r"no samples for variants \['b'\]"):
        build_report(experiment(), {"a": samples(rng, 100)})


def test_misaligned_per_frame_arrays_are_rejected():
    with pytest.raises(ReportError, match="aligned"):
        VariantSamples(infer_ms=np.ones(3), e2e_ms=np.ones(2), detections=np.ones(3), mean_confidence=np.ones(3),
                       error=np.zeros(3, bool), crossings_per_camera_hour=np.ones(1), cameras=1)


def test_json_is_strict_and_carries_the_decision():
    rng = np.random.default_rng(11)
    report = build_report(experiment(), {"a": samples(rng, 2000), "b": samples(rng, 100)})

    def reject(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    data = json.loads(report.to_json(), parse_constant=reject)
    assert data["decision"] == "not enough data" and data["comparisons"][0]["candidate"] == "b"


def test_shadow_pairs_are_summarised_with_box_agreement_and_paired_tests():
    from scipy import stats as scipy_stats

    from experiments.report import ShadowSamples, summarise_shadow

    control = np.array([3, 4, 5, 2, 6], dtype=float)
    candidate = np.array([3, 5, 5, 1, 7], dtype=float)
    shadow = ShadowSamples("candidate", control, candidate, np.array([3, 4, 5, 1, 6], dtype=float),
                           np.array([10, 11, 12, 10, 11.5]), np.array([6, 6.5, 7, 6, 6.2]))
    summary = summarise_shadow(shadow, alpha=0.05)
    assert summary.pairs == 5
    assert summary.box_agreement == pytest.approx(2 * 19 / (20 + 21))
    assert summary.equal_count_share == pytest.approx(2 / 5)
    assert summary.infer_ms.t_p_value == pytest.approx(scipy_stats.ttest_rel(shadow.candidate_infer_ms,
                                                                             shadow.control_infer_ms).pvalue)


def test_a_candidate_whose_outputs_drift_from_the_controls_is_held_and_the_report_says_why():
    rng = np.random.default_rng(2)
    data = {"a": samples(rng, 2000), "b": samples(rng, 2000, slower_ms=-2.0)}  # faster: promoted without the guard
    guarded = experiment(guardrails={"max_output_drift": 0.1})
    assert build_report(guarded, data, output_drift={"b": {"detections_per_frame": 0.05}}).decision == "promote"

    report = build_report(guarded, data, output_drift={"b": {"detections_per_frame": 0.05, "mean_confidence": 0.3}})
    assert report.decision == "keep control" and report.promote is None
    assert "b is held" in report.reason and "Jensen-Shannon 0.300 on mean_confidence" in report.reason
    assert report.comparison("b").output_drift == {"detections_per_frame": 0.05, "mean_confidence": 0.3}
    assert build_report(experiment(), data, output_drift={"b": {"mean_confidence": 0.3}}).decision == "promote"
