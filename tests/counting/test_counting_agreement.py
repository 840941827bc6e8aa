"""Label-free agreement of two models' crossings on random lines, on synthetic events."""

import numpy as np
import pytest

from counting.agreement import EDGE_MARGIN, LENGTH_RANGE, agreement, random_lines
from counting.config import LineConfig
from counting.lines import CrossingEvent

FRAME = (768, 576)
LINES = [LineConfig(name="A", start=(100, 0), end=(100, 576)), LineConfig(name="B", start=(0, 300), end=(768, 300)),
         LineConfig(name="C", start=(500, 0), end=(500, 576))]


def events(*crossings: tuple[str, int, str]) -> list[CrossingEvent]:
    return [CrossingEvent(frame, frame * 100, line, direction, track_id, 0, "person")
            for track_id, (line, frame, direction) in enumerate(crossings, start=1)]


def test_the_same_seed_draws_the_same_lines_and_another_seed_other_lines():
    assert random_lines(FRAME, 20, seed=3) == random_lines(FRAME, 20, seed=3)
    assert random_lines(FRAME, 20, seed=3) != random_lines(FRAME, 20, seed=4)


def test_random_lines_are_centred_inside_the_frame_with_lengths_in_range():
    lines = random_lines(FRAME, 500, seed=0)
    start, end = np.array([line.start for line in lines]), np.array([line.end for line in lines])
    centres, lengths = (start + end) / 2, np.linalg.norm(end - start, axis=1)
    diagonal = np.hypot(*FRAME)

    assert [line.name for line in lines[:2]] == ["R000", "R001"] and len({line.name for line in lines}) == 500
    assert (centres >= np.array(FRAME) * EDGE_MARGIN - 0.1).all()
    assert (centres <= np.array(FRAME) * (1 - EDGE_MARGIN) + 0.1).all()
    assert lengths.min() >= LENGTH_RANGE[0] * diagonal - 0.2 and lengths.max() <= LENGTH_RANGE[1] * diagonal + 0.2


def test_random_lines_take_every_orientation():
    lines = random_lines(FRAME, 500, seed=0)
    angles = np.degrees(np.arctan2(*np.array([np.subtract(line.end, line.start)[::-1] for line in lines]).T)) % 180
    assert np.histogram(angles, bins=4, range=(0, 180))[0].min() > 80


def test_a_line_count_below_one_is_refused():
    with pytest.raises(ValueError, match="count must be >= 1"):
        random_lines(FRAME, 0)


def test_a_candidate_counting_what_the_reference_counts_agrees_fully():
    reference = events(("A", 10, "in"), ("A", 40, "out"), ("B", 22, "in"))
    scored = agreement(reference, events(("A", 12, "in"), ("A", 37, "out"), ("B", 22, "in")), LINES)
    assert (scored.matched, scored.only_reference, scored.only_candidate) == (3, 0, 0)
    assert scored.precision == scored.recall == 1.0


def test_crossings_further_apart_than_the_tolerance_count_against_both_models():
    scored = agreement(events(("A", 10, "in")), events(("A", 16, "in")), LINES, tolerance_frames=5)
    assert (scored.matched, scored.only_reference, scored.only_candidate) == (0, 1, 1)
    assert scored.precision == scored.recall == 0.0


def test_a_crossing_in_the_other_direction_does_not_match():
    scored = agreement(events(("B", 10, "in")), events(("B", 10, "out")), LINES)
    assert (scored.matched, scored.only_reference, scored.only_candidate) == (0, 1, 1)


def test_lines_neither_model_saw_crossed_are_left_out_but_counted_as_drawn():
    scored = agreement(events(("A", 10, "in")), events(("B", 5, "out")), LINES)
    assert [line.line for line in scored.lines] == ["A", "B"]
    assert scored.lines_counted == 3


def test_the_most_different_lines_come_first():
    reference = events(("A", 10, "in"), ("B", 10, "in"), ("B", 30, "in"), ("C", 50, "out"))
    candidate = events(("A", 10, "in"), ("C", 50, "out"), ("C", 90, "in"))
    assert [line.line for line in agreement(reference, candidate, LINES).most_different()] == ["B", "C"]


def test_with_no_crossings_at_all_both_figures_are_one():
    scored = agreement([], [], LINES)
    assert scored.lines == () and scored.precision == scored.recall == 1.0
