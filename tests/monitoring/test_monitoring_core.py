"""The pure monitoring core: distances, one window against its reference, persistence, diagnosis, windows."""

import math

import numpy as np
import pytest

from monitoring.diagnosis import Key, diagnose
from monitoring.distances import (
    Categories,
    Distribution,
    binned_shares,
    category_distance,
    distance,
    jensen_shannon,
    psi,
    quantile_edges,
    wasserstein,
)
from monitoring.drift import AREA_FLOOR, Comparison, Thresholds, WindowSample, compare, log_area
from monitoring.persistence import Persistence
from monitoring.reference import HOUR_MS, WEEK_MS, Period, due_windows, same_hour_last_week, window_of

RNG = np.random.default_rng(3)


def normal(mean: float, std: float, n: int = 5000) -> Distribution:
    return Distribution.of(np.round(RNG.normal(mean, std, n), 3))


# --- distances ---------------------------------------------------------------------------------------------------
def test_a_distribution_merges_repeated_values_and_drops_zero_counts():
    d = Distribution.of([3, 1, 3, 2], [1, 0, 2, 5])
    assert d.values.tolist() == [2, 3] and d.counts.tolist() == [5, 3]
    assert d.total == 8 and d.share_at_or_below(2) == 5 / 8


def test_identical_distributions_are_at_distance_zero_by_every_measure():
    d = normal(0.5, 0.07)
    for measure in ("psi", "jensen_shannon", "wasserstein"):
        assert distance(measure, d, d, 0.01) == pytest.approx(0.0, abs=1e-12)


def test_jensen_shannon_is_one_for_distributions_that_do_not_overlap():
    assert jensen_shannon(Distribution.of(np.arange(10)), Distribution.of([100] * 10)) == pytest.approx(1.0)


def test_psi_of_a_known_shift_between_two_bins():
    # reference 50/50 over {0, 1}; current 80/20: PSI = (0.2-0.5) ln(0.2/0.5) + (0.8-0.5) ln(0.8/0.5)
    reference = Distribution.of([0, 1], [50, 50])
    current = Distribution.of([0, 1], [80, 20])
    assert quantile_edges(reference)[1:].tolist() == [0, 1]
    expected = (0.8 - 0.5) * math.log(0.8 / 0.5) + (0.2 - 0.5) * math.log(0.2 / 0.5)
    assert psi(reference, current) == pytest.approx(expected)  # the empty outer bins add (1e-4 - 1e-4) ln 1 = 0


def test_values_beyond_everything_the_reference_saw_get_bins_of_their_own():
    reference = Distribution.of(np.arange(5, 20))
    edges = quantile_edges(reference)
    assert edges[0] < 5 and edges[-1] == 19
    blank = Distribution.of([0] * 100)  # a camera that lost every box
    assert binned_shares(blank, edges)[0] == 1.0
    assert jensen_shannon(reference, blank) == pytest.approx(1.0)


def test_the_normalised_wasserstein_is_the_shift_in_reference_standard_deviations():
    reference = normal(10, 2)
    shifted = Distribution(reference.values + 1.0, reference.counts)
    assert wasserstein(reference, shifted, min_scale=1.0) == pytest.approx(1.0 / reference.std(), rel=1e-6)


def test_a_reference_that_never_varies_is_divided_by_the_signal_floor_not_zero():
    one_person = Distribution.of([1] * 100)
    assert wasserstein(one_person, Distribution.of([2] * 100), min_scale=1.0) == pytest.approx(1.0)


def test_quantile_bins_of_a_few_distinct_counts_do_not_repeat():
    edges = quantile_edges(Distribution.of([0] * 70 + [1] * 20 + [5] * 10))
    assert edges[1:].tolist() == [0, 1, 5] and edges[0] < 0


# --- one window against its reference ---------------------------------------------------------------------------
def sample(detections_mean: float, confidence_mean: float, n: int = 1000, empty: float = 0.0) -> WindowSample:
    counts = np.maximum(RNG.poisson(detections_mean, n), 1)
    counts[: int(empty * n)] = 0
    confidence = np.clip(RNG.normal(confidence_mean, 0.05, n), 0, 1)
    return WindowSample.of_frames(counts.tolist(), confidence.tolist())


def test_a_window_like_its_reference_does_not_drift_and_a_darker_one_drifts_on_confidence():
    reference = sample(12, 0.55, 5000)
    same = compare(reference, sample(12, 0.55))
    assert same.judged and not same.drifted and len(same.scores) == 6
    darker = compare(reference, sample(12, 0.45))
    assert darker.drifted_signals == ("confidence",)
    assert darker.means["confidence"][1] < darker.means["confidence"][0]


def test_a_signal_drifts_only_when_enough_measures_agree():
    # Ten equally likely confidence levels; the current window lowers every level but the lowest by 0.04, inside
    # its quantile bin: PSI and JS see the same bins, the normalised Wasserstein sees the mass move 0.125 sd.
    levels = np.round(np.arange(1, 11) / 10, 2)
    reference = WindowSample.of_frames([5] * 1000, np.repeat(levels, 100).tolist())
    current = WindowSample.of_frames([5] * 1000, np.repeat(np.r_[levels[0], levels[1:] - 0.04], 100).tolist())
    scores = {s.measure: s.value for s in compare(reference, current).scores if s.signal == "confidence"}
    assert scores["psi"] == pytest.approx(0) and scores["jensen_shannon"] == pytest.approx(0)
    assert scores["wasserstein"] == pytest.approx(0.9 * 0.04 / np.std(levels))
    assert not compare(reference, current, min_measures=2).drifted
    assert compare(reference, current, min_measures=1).drifted_signals == ("confidence",)


def test_windows_without_enough_frames_or_reference_are_not_judged():
    reference = sample(12, 0.55)
    assert compare(None, reference).status == "no-reference"
    assert compare(sample(12, 0.55, 50), reference).status == "no-reference"
    assert compare(reference, sample(12, 0.55, 50)).status == "insufficient-data"


def test_a_blank_camera_drifts_on_detections_and_skips_the_confidence_it_no_longer_has():
    result = compare(sample(12, 0.55), sample(12, 0.55, empty=1.0))
    assert result.drifted_signals == ("detections",)
    assert {s.signal for s in result.scores} == {"detections"}
    assert result.empty_shares == (0.0, 1.0)


def test_thresholds_are_configurable():
    reference, current = sample(12, 0.55, 5000), sample(12, 0.45)
    assert not compare(reference, current, Thresholds(psi=50, jensen_shannon=0.99, wasserstein=50)).drifted


# --- persistence -------------------------------------------------------------------------------------------------
def test_drift_persists_after_k_windows_raises_one_onset_and_ends_after_k_quiet_ones():
    p = Persistence(3)
    flags = [True, True, None, True, True, True, False, True, False, False, False, True, True, True]
    transitions = [p.update("cam", i, f) for i, f in enumerate(flags)]
    assert transitions == ["quiet", "quiet", "not-judged", "onset", "active", "active", "active", "active",
                           "active", "active", "resolved", "quiet", "quiet", "onset"]
    assert transitions.count("onset") == 2 and p.state("cam").since == 11


def test_a_resumed_episode_does_not_start_again():
    p = Persistence(3)
    state = p.resume("cam", [(0, True), (1, False), (2, True), (3, None), (4, True)], active=True)
    assert (state.active, state.drifted_run, state.quiet_run, state.since) == (True, 2, 0, 2)
    assert p.update("cam", 5, True) == "active"
    fresh = Persistence(3)
    fresh.resume("cam", [(0, False), (1, True), (2, True)], active=False)
    assert fresh.update("cam", 3, True) == "onset"


def test_a_snapshot_undoes_a_window_that_must_be_evaluated_again():
    p = Persistence(2)
    p.update("cam", 0, True)
    snapshot = p.snapshot()
    assert p.update("cam", 1, True) == "onset"
    p.restore(snapshot)
    assert p.update("cam", 1, True) == "onset"


# --- diagnosis ---------------------------------------------------------------------------------------------------
def judged(drifted: tuple = (), means=None, empty=(0.0, 0.0)) -> Comparison:
    return Comparison("judged", (), drifted, 600, 1800, means or {"detections": (12.0, 12.0),
                                                                "confidence": (0.55, 0.45)}, empty)


def test_one_camera_drifting_among_quiet_ones_is_a_camera_problem():
    comparisons = {Key("a", "m", "1"): judged(("confidence",)), Key("b", "m", "1"): judged(),
                   Key("c", "m", "1"): judged()}
    (key, d), = diagnose(comparisons).items()
    assert key.camera == "a" and (d.problem, d.cause, d.cameras) == ("camera", "lower-confidence", ("a",))


def test_every_camera_on_a_version_drifting_is_a_model_problem():
    comparisons = {Key(c, "m", "2"): judged(("detections",), {"detections": (12.0, 6.0)}) for c in "abc"}
    comparisons[Key("d", "m", "1")] = judged()
    result = diagnose(comparisons)
    assert {k.camera for k in result} == {"a", "b", "c"}
    assert {(d.problem, d.cause, d.cameras) for d in result.values()} == {("model", "fewer-detections",
                                                                          ("a", "b", "c"))}


def test_a_blank_camera_is_a_camera_problem_even_when_its_version_drifts_everywhere():
    comparisons = {Key("a", "m", "1"): judged(("detections",), empty=(0.0, 1.0)),
                   Key("b", "m", "1"): judged(("detections",), {"detections": (12.0, 20.0)})}
    result = diagnose(comparisons)
    assert (result[Key("a", "m", "1")].problem, result[Key("a", "m", "1")].cause) == ("camera", "no-detections")
    assert (result[Key("b", "m", "1")].problem, result[Key("b", "m", "1")].cause) == ("model", "more-detections")


def test_a_version_on_one_camera_cannot_tell_camera_from_model():
    (d,) = diagnose({Key("a", "m", "1"): judged(("confidence",))}).values()
    assert d.problem == "undetermined"


# --- windows and references --------------------------------------------------------------------------------------
def test_due_windows_are_whole_windows_over_for_the_lateness_after_the_last_one_evaluated():
    minute = 60_000
    now = 10 * 5 * minute + 90_000  # 1.5 minutes into window 10
    assert [w.start_ms // (5 * minute) for w in due_windows(now, 5 * minute, minute, None, 3 * 5 * minute)] == [7, 8,
                                                                                                                9]
    assert due_windows(now, 5 * minute, 2 * minute, 8 * 5 * minute, 3600_000) == []  # window 9 not over + 2 min
    assert window_of(now, 5 * minute) == Period(50 * minute, 55 * minute)


def test_the_same_hour_last_week_is_the_clock_hour_of_the_window_seven_days_earlier():
    window = Period(1714558507000 - 1714558507000 % 300_000, 1714558507000 - 1714558507000 % 300_000 + 300_000)
    reference = same_hour_last_week(window)
    assert reference.end_ms - reference.start_ms == HOUR_MS
    assert reference.start_ms == window.start_ms // HOUR_MS * HOUR_MS - WEEK_MS


# --- box signals: box area and class mix -------------------------------------------------------------------------
def boxes_sample(n: int = 1000, area_scale: float = 1.0, car_share: float = 0.1, boxes: int = 4) -> WindowSample:
    """``n`` frames of ``boxes`` boxes each: log-normal areas around 1 % of the frame (times ``area_scale``), a
    ``car_share`` of cars among people."""
    areas = np.exp(RNG.normal(np.log(0.01 * area_scale), 0.5, n * boxes))
    classes = np.where(RNG.random(n * boxes) < car_share, "car", "person").tolist()
    confidence = np.clip(RNG.normal(0.55, 0.05, n), 0, 1)
    return WindowSample.of_frames([boxes] * n, confidence.tolist(), areas.tolist(), classes)


def test_categories_merge_repeated_names_and_know_the_share_of_each():
    mix = Categories.of(["person", "car", "person"], [3, 1, 1])
    assert mix.names == ("car", "person") and mix.counts.tolist() == [1, 4]
    assert (mix.share("person"), mix.share("bus"), mix.most_common()) == (0.8, 0.0, "person")


def test_psi_and_jensen_shannon_of_categories_use_one_bin_per_category_of_either_side():
    reference = Categories.of(["person", "car"], [50, 50])
    current = Categories.of(["person", "car"], [80, 20])
    expected = (0.8 - 0.5) * math.log(0.8 / 0.5) + (0.2 - 0.5) * math.log(0.2 / 0.5)
    assert category_distance("psi", reference, current) == pytest.approx(expected)
    assert category_distance("jensen_shannon", reference, Categories.of(["bus"], [10])) == pytest.approx(1.0)


def test_the_wasserstein_distance_is_refused_between_categories():
    with pytest.raises(ValueError, match="not defined between categories"):
        category_distance("wasserstein", Categories.of(["a"]), Categories.of(["b"]))


def test_box_area_is_the_rounded_log_of_the_area_ratio_floored_for_degenerate_boxes():
    assert log_area(0.01) == -2.0 and log_area(0.0123) == round(math.log10(0.0123), 2)
    assert log_area(0.0) == math.log10(AREA_FLOOR)


def test_a_window_like_its_reference_does_not_drift_on_any_box_signal():
    result = compare(boxes_sample(5000), boxes_sample())
    assert result.judged and not result.drifted
    assert {s.signal for s in result.scores} == {"detections", "confidence", "box_area", "class_mix"}


def test_the_class_mix_is_scored_with_the_categorical_measures_only():
    result = compare(boxes_sample(5000), boxes_sample())
    assert [s.measure for s in result.scores if s.signal == "class_mix"] == ["psi", "jensen_shannon"]
    only_wasserstein = compare(boxes_sample(5000), boxes_sample(), measures=("wasserstein",), min_measures=1)
    assert "class_mix" not in {s.signal for s in only_wasserstein.scores}


def test_a_zoomed_out_camera_drifts_on_box_area_alone_and_the_cause_is_smaller_boxes():
    result = compare(boxes_sample(5000), boxes_sample(area_scale=0.5))
    assert result.drifted_signals == ("box_area",)
    assert result.means["box_area"][1] < result.means["box_area"][0]
    (d,) = diagnose({Key("a", "m", "1"): result}).values()
    assert d.cause == "smaller-boxes"


def test_a_changed_class_mix_drifts_on_class_mix_alone_and_names_it():
    result = compare(boxes_sample(5000, car_share=0.1), boxes_sample(car_share=0.4))
    assert result.drifted_signals == ("class_mix",)
    assert result.dominant_class == "person" and result.means["class_mix"] == pytest.approx((0.9, 0.6), abs=0.03)
    (d,) = diagnose({Key("a", "m", "1"): result}).values()
    assert d.cause == "class-mix"


def test_the_class_mix_vote_needs_every_categorical_measure_when_min_measures_exceeds_them():
    # PSI and JS of one category share disagree at these thresholds: PSI over, JS under
    reference, current = boxes_sample(5000, car_share=0.1), boxes_sample(car_share=0.2)
    scores = {s.measure: s.value for s in compare(reference, current).scores if s.signal == "class_mix"}
    thresholds = Thresholds(psi=scores["psi"] / 2, jensen_shannon=scores["jensen_shannon"] * 2)
    assert "class_mix" not in compare(reference, current, thresholds, min_measures=2).drifted_signals
    assert "class_mix" not in compare(reference, current, thresholds, min_measures=3).drifted_signals
    assert "class_mix" in compare(reference, current, thresholds, min_measures=1).drifted_signals


def test_box_signals_are_not_scored_without_enough_frames_with_recorded_boxes():
    # a reference written before inference_log had per-box columns: counts and confidences only
    without_boxes = WindowSample.of_frames([4] * 1000, [0.55] * 1000)
    result = compare(without_boxes, boxes_sample())
    assert result.judged and {s.signal for s in result.scores} == {"detections", "confidence"}
    few = boxes_sample(50)
    assert {s.signal for s in compare(boxes_sample(5000), WindowSample(
        boxes_sample().detections, boxes_sample().confidence, few.box_area, few.class_mix, few.box_frames)).scores
            } == {"detections", "confidence"}


def test_a_window_sample_refuses_boxes_that_do_not_match_the_counts():
    with pytest.raises(ValueError, match="boxes"):
        WindowSample.of_frames([2, 1], [0.5, 0.5], [0.01, 0.02], ["person", "car"])
