"""ZoneCounter: occupancy per class, entries/exits, dwell times."""

import json

import numpy as np

from counting.config import ZoneConfig
from counting.zones import ZoneCounter, points_in_polygon

SQUARE = [(0, 0), (100, 0), (100, 100), (0, 100)]
NAMES = ["person", "bicycle"]


def zone(polygon=SQUARE) -> ZoneCounter:
    return ZoneCounter(ZoneConfig(name="Z", polygon=polygon), NAMES, [0, 1])


def step(counter: ZoneCounter, seq: int, anchors: dict[int, tuple[float, float]], class_id=None):
    ids = np.array(list(anchors), np.int64)
    points = np.array(list(anchors.values()), np.float64).reshape(-1, 2)
    classes = np.zeros(len(ids), np.int64) if class_id is None else np.array(class_id)
    return counter.update(seq, 1000 + seq * 40, ids, points, classes)


def test_occupancy_counts_tracked_anchors_inside_per_class_including_zero():
    frame = step(zone(), 0, {1: (50, 50), 2: (60, 60), 3: (150, 50)}, class_id=[0, 0, 0])
    assert frame.occupancy == {"person": 2, "bicycle": 0}


def test_entry_and_exit_events_carry_the_dwell_time_on_exit():
    counter = zone()
    events = [e for seq, x in enumerate([150, 90, 50, 10, -20]) for e in step(counter, seq, {7: (x, 50)}).events]
    assert [(e.kind, e.frame_seq, e.track_id, e.class_name, e.dwell_ms) for e in events] == [
        ("enter", 1, 7, "person", None),
        ("exit", 4, 7, "person", 120),
    ]


def test_current_dwell_is_reported_for_tracks_inside():
    counter = zone()
    for seq in range(5):
        step(counter, seq, {7: (50, 50)})
    assert counter.dwell_ms(1000 + 4 * 40) == {7: 160}


def test_occluded_track_reappearing_inside_does_not_enter_again():
    counter = zone()
    step(counter, 0, {7: (50, 50)})
    step(counter, 1, {})
    assert step(counter, 5, {7: (55, 50)}).events == []


def test_track_dropped_while_inside_exits_at_the_last_frame_seen_inside():
    counter = zone()
    step(counter, 0, {7: (50, 50)})
    step(counter, 3, {7: (55, 50)})
    (event,) = counter.retain(np.array([], np.int64))
    assert (event.kind, event.frame_seq, event.capture_ts_ms, event.dwell_ms) == ("exit", 3, 1120, 120)


def test_point_in_concave_polygon_follows_the_even_odd_rule():
    u_shape = np.array([(0, 0), (30, 0), (30, 80), (70, 80), (70, 0), (100, 0), (100, 100), (0, 100)], float)
    points = np.array([(15, 40), (50, 40), (85, 40), (50, 90), (150, 50)], float)
    assert points_in_polygon(points, u_shape).tolist() == [True, False, True, True, False]


def test_restored_zone_counter_continues_identically():
    original = zone()
    step(original, 0, {7: (50, 50)})
    restored = ZoneCounter.from_state(json.loads(json.dumps(original.to_state())), original.zone, NAMES, [0, 1])
    assert step(restored, 1, {7: (150, 50)}) == step(original, 1, {7: (150, 50)})
