"""Crossing accuracy against labelled ground truth, on synthetic events."""

import json

import pytest

from counting.evaluation import GroundTruthError, LabelledCrossing, LineTruth, evaluate, load_line_truth
from counting.lines import CrossingEvent

VERTICAL = ((384.0, 120.0), (384.0, 576.0))


def truth(*labels: tuple[int, str], line: tuple = VERTICAL) -> LineTruth:
    return LineTruth("L1", line[0], line[1], tuple(LabelledCrossing(frame, direction) for frame, direction in labels))


def emitted(*events: tuple[int, str], line: str = "L1") -> list[CrossingEvent]:
    return [CrossingEvent(frame, frame * 100, line, direction, track_id, 0, "person")
            for track_id, (frame, direction) in enumerate(events, start=1)]


def write_truth(tmp_path, p1, p2, crossings) -> str:
    path = tmp_path / "truth.json"
    path.write_text(json.dumps({"lines": {"L1": {"p1": p1, "p2": p2, "crossings": crossings}}}))
    return str(path)


def test_walking_left_over_a_line_drawn_downwards_is_in(tmp_path):
    path = write_truth(tmp_path, [384, 120], [384, 576], [{"frame": 7, "direction": "left"}])
    assert load_line_truth(path).crossings == (LabelledCrossing(7, "in"),)


def test_walking_left_over_a_line_drawn_upwards_is_out(tmp_path):
    path = write_truth(tmp_path, [384, 576], [384, 120], [{"frame": 7, "direction": "left"}])
    assert load_line_truth(path).crossings == (LabelledCrossing(7, "out"),)


def test_walking_down_over_a_line_drawn_left_to_right_is_in(tmp_path):
    path = write_truth(tmp_path, [0, 300], [768, 300], [{"frame": 7, "direction": "down"}])
    assert load_line_truth(path).crossings == (LabelledCrossing(7, "in"),)


def test_direction_parallel_to_the_line_is_rejected(tmp_path):
    path = write_truth(tmp_path, [384, 120], [384, 576], [{"frame": 7, "direction": "up"}])
    with pytest.raises(GroundTruthError, match="parallel"):
        load_line_truth(path)


def test_exact_match_gives_full_precision_and_recall():
    result = evaluate(emitted((10, "in"), (20, "out")), truth((10, "in"), (20, "out")))
    assert (result.precision, result.recall, result.misses, result.false_positives) == (1.0, 1.0, (), ())


def test_emitted_crossing_at_the_tolerance_matches():
    assert evaluate(emitted((15, "in")), truth((10, "in")), tolerance_frames=5).matched == ((10, 15, "in"),)


def test_emitted_crossing_six_frames_off_is_a_miss_and_a_false_positive():
    result = evaluate(emitted((16, "in")), truth((10, "in")), tolerance_frames=5)
    assert result.misses == (LabelledCrossing(10, "in"),)
    assert [e.frame_seq for e in result.false_positives] == [16]


def test_opposite_direction_at_the_same_frame_does_not_match():
    result = evaluate(emitted((10, "out")), truth((10, "in")))
    assert (result.precision, result.recall) == (0.0, 0.0)


def test_one_emitted_crossing_matches_at_most_one_label():
    result = evaluate(emitted((10, "in")), truth((9, "in"), (11, "in")))
    assert len(result.matched) == 1 and len(result.misses) == 1 and result.precision == 1.0


def test_matching_maximises_pairs_before_closeness():
    # Greedy nearest-first would pair 12 with 13 and leave 8 unmatched; the optimal assignment pairs both.
    result = evaluate(emitted((8, "in"), (13, "in")), truth((12, "in"), (17, "in")), tolerance_frames=5)
    assert result.matched == ((12, 8, "in"), (17, 13, "in"))


def test_events_of_other_lines_are_ignored():
    result = evaluate(emitted((10, "in"), line="L2") + emitted((10, "in")), truth((10, "in")))
    assert result.directions["in"].emitted == 1 and result.precision == 1.0


def test_direction_counts_carry_the_signed_error_percentage():
    labels = truth((10, "in"), (30, "in"), (50, "out"), (70, "out"))
    result = evaluate(emitted((10, "in"), (30, "in"), (50, "in")), labels)
    assert (result.directions["in"].error_pct, result.directions["out"].error_pct) == (50.0, -100.0)


def test_bar_needs_every_direction_within_the_error_and_precision_and_recall():
    labels = truth(*[(10 * i, "in") for i in range(1, 11)])
    assert evaluate(emitted(*[(10 * i, "in") for i in range(1, 10)]), labels).meets()
    assert not evaluate(emitted(*[(10 * i, "in") for i in range(1, 9)]), labels).meets()


def test_under_ten_labelled_a_direction_may_be_off_by_one():
    labels = truth((10, "in"), (20, "in"), (30, "in"), (40, "out"))
    assert evaluate(emitted((10, "in"), (20, "in"), (30, "in"), (40, "out"), (45, "out")), labels,
                    tolerance_frames=1).meets(min_precision=0.0)
    assert not evaluate(emitted((10, "in"), (40, "out")), labels).meets(min_recall=0.0)  # 1 of 3: off by two


def test_every_line_of_a_file_is_parsed_in_file_order():
    from counting.evaluation import parse_all_lines

    document = {"lines": {
        "H": {"p1": [0, 300], "p2": [768, 300], "crossings": [{"frame": 3, "direction": "down"}]},
        "D": {"p1": [150, 330], "p2": [330, 150], "crossings": [{"frame": 5, "direction": "left"},
                                                               {"frame": 4, "direction": "right"}]},
    }}
    lines = parse_all_lines(document)
    assert [line.name for line in lines] == ["H", "D"]
    assert lines[0].crossings == (LabelledCrossing(3, "in"),)
    assert lines[1].crossings == (LabelledCrossing(4, "in"), LabelledCrossing(5, "out"))  # right is in for "/"


def test_occupancy_error_is_the_mean_absolute_and_signed_difference_per_labelled_frame():
    from counting.evaluation import occupancy_error, parse_occupancy

    hand = parse_occupancy({"occupancy": [{"frame": 9, "persons": 3}, {"frame": 2, "persons": 1}]})
    assert [h.frame for h in hand] == [2, 9]
    error = occupancy_error({2: 1, 9: 1, 5: 7}, hand)
    assert (error["frames"], error["mae"], error["bias"]) == (2, 1.0, -1.0)
    assert occupancy_error({}, ())["mae"] is None


def test_malformed_occupancy_is_a_ground_truth_error():
    from counting.evaluation import parse_occupancy

    with pytest.raises(GroundTruthError, match="occupancy"):
        parse_occupancy({"occupancy": [{"frame": 1}]})
