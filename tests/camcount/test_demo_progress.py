"""`camcount demo` waits until counting has seen every frame of this run's cameras, numbered from its first_seq."""

from __future__ import annotations

from camcount.commands.demo import frames_counted

FIRST_SEQ = 1_700_000_000_000


def test_a_camera_counting_has_not_seen_yet_has_no_frames_counted():
    assert frames_counted(-1, FIRST_SEQ, 795) == 0


def test_a_previous_runs_last_frame_counts_nothing_of_this_run():
    assert frames_counted(FIRST_SEQ - 5_000, FIRST_SEQ, 795) == 0


def test_frames_up_to_the_last_seen_one_are_counted():
    assert frames_counted(FIRST_SEQ + 99, FIRST_SEQ, 795) == 100


def test_the_last_frame_seen_means_every_frame_is_counted():
    assert frames_counted(FIRST_SEQ + 794, FIRST_SEQ, 795) == 795
