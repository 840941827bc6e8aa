"""LineCounter on synthetic track sequences: one scenario per behaviour, each a past peer failure."""

import json

import numpy as np

from counting.config import LineConfig
from counting.lines import LineCounter, segments_touch

Track = dict[int, tuple[float, float]]  # track id -> anchor of one frame


def counter(start=(100, 0), end=(100, 200), min_distance_px=0.0, min_stay_ms=0) -> LineCounter:
    """A line with no hysteresis band and no minimum stay unless a test asks for them: each rule on its own."""
    return LineCounter(LineConfig(name="L", start=start, end=end, min_distance_px=min_distance_px,
                                  min_stay_ms=min_stay_ms), ["person"])


def feed(line: LineCounter, frames: list[Track], first_seq: int = 0) -> list[tuple[int, int, str]]:
    """(frame_seq, track_id, direction) of every event; capture time is 40 ms per frame."""
    events = []
    for seq, anchors in enumerate(frames, start=first_seq):
        ids = np.array(list(anchors), np.int64)
        points = np.array(list(anchors.values()), np.float64).reshape(-1, 2)
        for event in line.update(seq, seq * 40, ids, points, np.zeros(len(ids), np.int32)):
            assert event.capture_ts_ms == event.frame_seq * 40
            events.append((event.frame_seq, event.track_id, event.direction))
    return events


def walk(track_id: int, xs, y: float = 100.0) -> list[Track]:
    return [{track_id: (float(x), y)} for x in xs]


def test_crossing_onto_the_positive_cross_product_side_is_in():
    (sx, sy), (ex, ey), (px, py) = (100, 0), (100, 200), (80, 100)
    assert (ex - sx) * (py - sy) - (ey - sy) * (px - sx) > 0
    assert feed(counter(), walk(1, [120, 80])) == [(1, 1, "in")]


def test_crossing_onto_the_negative_cross_product_side_is_out():
    assert feed(counter(), walk(1, [80, 120])) == [(1, 1, "out")]


def test_line_ending_at_the_frame_edge_counts_a_crossing_near_that_end():
    edge_line = counter(start=(0, 300), end=(100, 300))
    frames = [{1: (5.0, 290.0)}, {1: (5.0, 296.0)}, {1: (5.0, 304.0)}, {1: (5.0, 310.0)}]
    assert feed(edge_line, frames) == [(2, 1, "in")]


def test_crossing_exactly_through_a_line_end_point_counts():
    edge_line = counter(start=(0, 300), end=(100, 300))
    assert feed(edge_line, [{1: (0.0, 290.0)}, {1: (0.0, 310.0)}]) == [(1, 1, "in")]


def test_side_change_beyond_the_segment_end_is_not_a_crossing():
    assert feed(counter(start=(0, 300), end=(100, 300)), [{1: (150.0, 290.0)}, {1: (150.0, 310.0)}]) == []


def test_fast_object_jumping_far_over_the_line_in_one_frame_counts_once():
    line = counter(min_distance_px=4.0)
    assert feed(line, walk(1, [400, 390, 20, 10, 0])) == [(2, 1, "in")]


def test_anchor_jittering_on_the_line_never_counts_with_hysteresis():
    line = counter(min_distance_px=4.0)
    jitter = [100 + (2 if i % 2 else -2) for i in range(20)]
    assert feed(line, walk(1, [130, 110] + jitter + [110, 130])) == []


def test_jitter_then_walking_on_counts_once_at_the_latest_arrival_on_the_new_side():
    line = counter(min_distance_px=4.0)
    jitter = [100 + (2 if i % 2 else -2) for i in range(20)]  # ends on x=102 (out side) at frame 21
    xs = [130, 70] + jitter + [103, 110, 130]
    # frame 1 jumps to x=70 but the jitter then goes back and forth; the last arrival on the
    # out side is frame 21 (x=102), and it is confirmed at frame 23 (x=110, 10 px past the line).
    assert feed(line, walk(1, xs)) == [(1, 1, "in"), (21, 1, "out")]


def test_hysteresis_reports_the_first_frame_on_the_new_side_once_confirmed():
    line = counter(min_distance_px=10.0)
    events = []
    for seq, anchors in enumerate(walk(7, [90, 98, 101, 103, 108, 112, 130])):
        got = line.update(seq, seq * 40, np.array(list(anchors)), np.array(list(anchors.values())), np.zeros(1))
        events += [(seq, e.frame_seq, e.direction) for e in got]
    assert events == [(5, 2, "out")]  # confirmed at frame 5 (12 px past), reported at frame 2


def test_walking_onto_the_line_stopping_and_turning_back_does_not_count():
    line = counter(min_distance_px=0.0)
    assert feed(line, walk(1, [140, 120, 100, 100, 100, 100, 120, 140])) == []


def test_stepping_inside_the_hysteresis_band_and_turning_back_does_not_count():
    line = counter(min_distance_px=4.0)
    assert feed(line, walk(1, [140, 120, 103, 98, 98, 103, 120, 140])) == []


def test_clearly_crossing_then_walking_back_counts_in_then_out():
    line = counter(min_distance_px=4.0)
    assert feed(line, walk(1, [140, 120, 90, 80, 90, 120, 140])) == [(2, 1, "in"), (5, 1, "out")]


def test_path_over_the_line_through_frames_exactly_on_it_counts_on_the_first_frame_past_it():
    assert feed(counter(), walk(1, [120, 100, 100, 80])) == [(3, 1, "in")]


def test_same_direction_again_after_walking_around_the_line_end_is_not_counted():
    line = counter(start=(100, 0), end=(100, 200))
    around_the_end = [{1: (120.0, 100.0)}, {1: (80.0, 100.0)}, {1: (80.0, 300.0)}, {1: (120.0, 300.0)},
                      {1: (120.0, 100.0)}, {1: (80.0, 100.0)}]
    assert feed(line, around_the_end) == [(1, 1, "in")]


def test_two_tracks_crossing_in_opposite_directions_on_the_same_frame_give_one_in_and_one_out():
    frames = [{1: (130.0, 50.0), 2: (70.0, 60.0)}, {1: (110.0, 50.0), 2: (90.0, 60.0)},
              {1: (90.0, 50.0), 2: (110.0, 60.0)}, {1: (70.0, 50.0), 2: (130.0, 60.0)}]
    assert feed(counter(min_distance_px=4.0), frames) == [(2, 1, "in"), (2, 2, "out")]


def test_track_absent_for_frames_and_back_on_the_other_side_counts_on_reappearance():
    frames = walk(1, [150, 140]) + [{}] * 15 + walk(1, [60, 50])
    assert feed(counter(min_distance_px=4.0), frames) == [(17, 1, "in")]


def test_track_is_not_counted_on_the_frame_it_is_first_seen():
    assert feed(counter(), [{1: (80.0, 100.0)}, {1: (70.0, 100.0)}]) == []


def test_retain_forgets_dropped_tracks():
    line = counter()
    feed(line, walk(1, [120]))
    line.retain(np.array([], np.int64))
    assert feed(line, walk(1, [80]), first_seq=1) == []  # seen anew: no previous side


def test_restored_line_counter_continues_a_pending_crossing_identically():
    frames = walk(1, [130, 102, 98, 103, 97, 90, 80, 110, 120])
    original = counter(min_distance_px=4.0)
    assert feed(original, frames[:5]) == []  # frame 4 (x=97) starts a crossing still pending at the snapshot
    restored = LineCounter.from_state(json.loads(json.dumps(original.to_state())), original.line, ["person"])
    assert feed(restored, frames[5:], first_seq=5) == [(4, 1, "in"), (7, 1, "out")]


# --- minimum stay on the new side (min_stay_ms; 40 ms per frame here) ------------------------------------------
def test_standing_on_the_line_while_the_box_wavers_past_the_band_never_counts():
    wavering = [130, 108, 108, 92, 92, 92, 108, 108, 92, 92, 108, 108, 108, 92, 92]  # +-8 px, never 200 ms away
    assert feed(counter(min_distance_px=4.0, min_stay_ms=200), walk(1, wavering)) == []


def test_a_crossing_is_confirmed_once_the_anchor_stayed_and_is_dated_at_its_first_frame_on_the_new_side():
    line, confirmed_on = counter(min_distance_px=4.0, min_stay_ms=200), []
    for seq, x in enumerate([120, 110, 90, 80, 70, 60, 50, 40, 30]):  # arrives at frame 2 (80 ms)
        for event in line.update(seq, seq * 40, np.array([1]), np.array([[x, 100.0]]), np.zeros(1, np.int32)):
            confirmed_on.append((seq, event.frame_seq, event.direction))
    assert confirmed_on == [(7, 2, "in")]  # 280 ms >= 80 + 200


def test_coming_back_before_the_stay_is_over_cancels_the_crossing_both_ways():
    assert feed(counter(min_distance_px=4.0, min_stay_ms=200), walk(1, [120, 90, 90, 110, 120, 130, 140, 150])) == []


def test_a_flip_back_that_never_settles_keeps_the_crossing_dated_at_its_first_arrival():
    # frame 2 wavers back inside the band (3 px) for one frame; the person crossed at frame 1
    xs = [120, 90, 103, 90, 80, 70, 60, 50, 40, 30]
    assert feed(counter(min_distance_px=4.0, min_stay_ms=200), walk(1, xs)) == [(1, 1, "in")]


def test_a_flip_back_that_stays_its_time_on_the_old_side_dates_the_next_crossing_anew():
    xs = [120, 90] + [103] * 6 + [90, 80, 70, 60, 50, 40, 30]  # back 240 ms >= 200, over again at frame 8
    assert feed(counter(min_distance_px=4.0, min_stay_ms=200), walk(1, xs)) == [(8, 1, "in")]


def test_a_flip_back_past_the_band_dates_the_next_crossing_anew():
    xs = [120, 90, 110, 90, 80, 70, 60, 50, 40, 30]  # frame 2 is 10 px back on the old side
    assert feed(counter(min_distance_px=4.0, min_stay_ms=200), walk(1, xs)) == [(3, 1, "in")]


def test_a_snapshot_taken_before_withdrawn_crossings_were_kept_continues_a_waiting_crossing():
    frames = walk(1, [120, 90, 85, 80, 75, 70, 65, 60])
    original = counter(min_distance_px=4.0, min_stay_ms=200)
    feed(original, frames[:3])
    state = original.to_state()
    for name in ("arrived_ts", "withdrawn", "withdrawn_frame", "withdrawn_ts"):
        del state[name]
    restored = LineCounter.from_state(state, original.line, ["person"])
    assert feed(restored, frames[3:], first_seq=3) == feed(original, frames[3:], first_seq=3) == [(1, 1, "in")]


def test_a_track_dropped_while_its_crossing_waits_counts_it_when_it_was_past_the_band():
    line = counter(min_distance_px=4.0, min_stay_ms=200)
    assert feed(line, walk(1, [120, 110, 90, 85])) == []
    dropped = line.retain(np.array([], np.int64))
    assert [(e.frame_seq, e.track_id, e.direction, e.class_name) for e in dropped] == [(2, 1, "in", "person")]


def test_a_track_dropped_inside_the_band_while_its_crossing_waits_counts_nothing():
    line = counter(min_distance_px=4.0, min_stay_ms=200)
    feed(line, walk(1, [120, 110, 98]))
    assert line.retain(np.array([], np.int64)) == []


def test_a_snapshot_taken_before_lines_kept_classes_restores_and_learns_the_class_at_the_next_box():
    original = counter(min_distance_px=4.0, min_stay_ms=200)
    feed(original, walk(1, [120, 90]))
    state = original.to_state()
    del state["class_id"]
    restored = LineCounter.from_state(state, original.line, ["person"])
    assert feed(restored, walk(1, [85, 80, 75, 70, 65]), first_seq=2) == [(1, 1, "in")]


def test_a_waiting_crossing_keeps_its_class_across_a_model_listing_classes_in_another_order():
    line = LineCounter(LineConfig(name="L", start=(100, 0), end=(100, 200), min_stay_ms=200), ["person", "car"])
    line.update(0, 0, np.array([1]), np.array([[120.0, 100.0]]), np.array([1]))
    line.update(1, 40, np.array([1]), np.array([[80.0, 100.0]]), np.array([1]))  # a car, waiting
    swapped = LineCounter.from_state(line.to_state(), line.line, ["car", "person"])  # the new model's order
    swapped.renumber_classes(np.array([1, 0]))
    assert [(e.class_id, e.class_name) for e in swapped.retain(np.array([], np.int64))] == [(0, "car")]


def test_segments_touch_includes_end_points_and_excludes_parallel_misses():
    a, b = np.array([0.0, 0.0]), np.array([10.0, 0.0])
    p0 = np.array([[10.0, -1.0], [11.0, -1.0], [0.0, 1.0], [5.0, 0.0]])
    p1 = np.array([[10.0, 1.0], [11.0, 1.0], [10.0, 1.0], [5.0, 0.0]])
    assert segments_touch(p0, p1, a, b).tolist() == [True, False, False, True]


def test_introduced_track_counts_a_crossing_made_before_its_first_update():
    line = counter()
    line.introduce(np.array([1]), np.array([[120.0, 100.0]]))
    assert feed(line, walk(1, [80, 70]), first_seq=5) == [(5, 1, "in")]


def test_introducing_a_known_track_changes_nothing():
    line = counter()
    feed(line, walk(1, [120]))
    line.introduce(np.array([1]), np.array([[80.0, 100.0]]))
    assert feed(line, walk(1, [110]), first_seq=1) == []
