"""CameraCounter end to end: detections in, tracked boxes, crossings and zone counts out."""

import json

import numpy as np
import pytest

from counting.config import CameraConfig, CameraConfigError, LineConfig, TrackerConfig, ZoneConfig
from counting.engine import CameraCounter
from models.detections import Detections

CLASSES = ["person", "bicycle", "car"]


def camera(**overrides) -> CameraCounter:
    config = CameraConfig(
        camera_id="cam-1",
        lines=[LineConfig(name="L1", start=(384, 0), end=(384, 576), min_stay_ms=0)],  # stay: see the end
        zones=[ZoneConfig(name="Z", polygon=[(0, 0), (384, 0), (384, 576), (0, 576)])],
        **overrides,
    )
    return CameraCounter(config, CLASSES)


def people(*feet: tuple[float, float], class_id: int = 0) -> Detections:
    xyxy = [(x - 20, y - 100, x + 20, y) for x, y in feet]
    return Detections(np.array(xyxy, np.float32).reshape(-1, 4), np.full(len(feet), 0.9), np.full(len(feet), class_id))


def run(counter: CameraCounter, frames: dict[int, Detections]):
    """Feed frames by seq; returns every result (None for late ones)."""
    return [counter.update(seq, seq * 40, detections) for seq, detections in frames.items()]


def crossings(results) -> list[tuple[int, str, int, str]]:
    return [(c.track_id, c.direction, c.frame_seq, c.class_name) for r in results if r for c in r.crossings]


def test_person_walking_left_to_right_over_l1_counts_one_out():
    results = run(camera(), {i: people((300 + 5 * i, 400)) for i in range(40)})
    assert crossings(results) == [(1, "out", 17, "person")]  # x=385 at frame 17


def test_detections_of_classes_not_configured_are_dropped_before_tracking():
    results = run(camera(), {i: people((300 + 5 * i, 400), class_id=2) for i in range(40)})
    assert all(len(r.tracked) == 0 for r in results) and crossings(results) == []


def test_occlusion_gap_of_fifteen_frames_keeps_the_id_and_counts_once():
    walk = {i: people((200 + 5 * i, 400)) for i in range(80)}
    for hidden in range(30, 45):  # x = 350..420: the person crosses x=384 while hidden
        walk[hidden] = Detections.empty()
    results = run(camera(), walk)
    assert {int(t) for r in results for t in r.tracked.tracker_id if t >= 0} == {1}
    assert crossings(results) == [(1, "out", 45, "person")]


def test_two_people_crossing_in_opposite_directions_at_once_count_one_in_and_one_out():
    frames = {i: people((300 + 5 * i, 400), (468 - 5 * i, 420)) for i in range(40)}
    assert sorted(crossings(run(camera(), frames))) == [(1, "out", 17, "person"), (2, "in", 17, "person")]


def test_zone_occupancy_lists_every_configured_class():
    counter = camera(classes=["person", "bicycle"])
    results = run(counter, {i: people((100, 400), (120, 400), (200, 300)) for i in range(3)})
    assert results[-1].zones == {"Z": {"person": 3, "bicycle": 0}}


def test_duplicate_and_late_frames_are_ignored_and_counted():
    counter = camera()
    counter.update(10, 400, people((100, 400)))
    assert counter.update(10, 400, people((100, 400))) is None
    assert counter.update(7, 280, people((100, 400))) is None
    assert counter.late_frames == 2


def test_skip_marker_makes_a_later_copy_of_that_frame_late():
    counter = camera()
    counter.update(1, 40, people((100, 400)))
    counter.skip(2)
    assert counter.update(2, 80, people((100, 400))) is None


def test_skipped_frames_are_bridged_by_prediction_and_keep_the_id():
    counter = camera()
    for seq in range(10):
        counter.update(seq, seq * 40, people((100 + 12 * seq, 400)))
    for seq in range(10, 15):
        counter.skip(seq)
    result = counter.update(15, 600, people((100 + 12 * 15, 400)))
    assert result.tracked.tracker_id.tolist() == [1]


def test_restored_camera_continues_with_the_same_events():
    frames = {i: people((100 + 5 * i, 400), (600 - 4 * i, 430)) for i in range(100)}
    for hidden in range(45, 52):  # the snapshot at 50 falls inside the first person's occlusion
        frames[hidden] = people((600 - 4 * hidden, 430))
    uninterrupted = camera()
    expected = run(uninterrupted, frames)
    first_half = camera()
    run(first_half, {s: d for s, d in frames.items() if s < 50})
    restored = CameraCounter.from_state(json.loads(json.dumps(first_half.to_state())), first_half.config, CLASSES)
    second_half = run(restored, {s: d for s, d in frames.items() if s >= 50})
    assert len(crossings(expected[50:])) == 2
    assert crossings(second_half) == crossings(expected[50:])
    assert [r.zone_events for r in second_half] == [r.zone_events for r in expected[50:]]
    ids = [r.tracked.tracker_id.tolist() for r in second_half]
    assert ids == [r.tracked.tracker_id.tolist() for r in expected[50:]]



def test_a_snapshot_restored_under_a_reordered_class_list_keeps_each_track_in_its_class():
    # A car walks across L1 and out of zone Z; the snapshot is taken mid-walk and restored for a model
    # version that lists the same classes in reverse order (car is id 2 before, id 0 after).
    before = camera(classes=["person", "car"])
    run(before, {i: people((300 + 5 * i, 400), class_id=2) for i in range(10)})
    reordered = list(reversed(CLASSES))
    restored = CameraCounter.from_state(json.loads(json.dumps(before.to_state())), before.config, reordered)
    results = run(restored, {i: people((300 + 5 * i, 400), class_id=0) for i in range(10, 40)})
    assert crossings(results) == [(1, "out", 17, "car")]
    assert [(e.kind, e.track_id, e.class_name) for r in results for e in r.zone_events] == [("exit", 1, "car")]

def test_config_class_unknown_to_the_model_is_rejected():
    config = CameraConfig(camera_id="cam-1", classes=["person", "unicorn"])
    with pytest.raises(CameraConfigError, match=r"classes \['unicorn'\] are not classes of the model"):
        CameraCounter(config, CLASSES)


def test_crossing_while_the_track_is_still_tentative_counts_on_its_first_frame_with_an_id():
    # min_hits=3: the id is issued at frame 2, when x=390 is already past the line at 384.
    results = run(camera(), {i: people((374 + 8 * i, 400)) for i in range(10)})
    assert crossings(results) == [(1, "out", 2, "person")]


# --- box calibration (models.calibration): anchors from calibrated boxes, tracking on the model's boxes ---------
def _knee_boxes(*feet: tuple[float, float]) -> Detections:
    """Boxes the way a detector that stops at the knees draws them: 50 px tall, centred on a 100 px body."""
    xyxy = [(x - 10, y - 75, x + 10, y - 25) for x, y in feet]
    return Detections(np.array(xyxy, np.float32).reshape(-1, 4), np.full(len(feet), 0.9), np.zeros(len(feet)))


def _walk_down(calibration=None):
    from counting.config import CameraConfig, LineConfig

    counter = CameraCounter(CameraConfig(camera_id="cam-1", lines=[LineConfig(name="H", start=(0, 300),
                                                                                end=(768, 300))]), CLASSES)
    return [counter.update(i, i * 40, _knee_boxes((400, 200 + 4 * i)), calibration,
                           None if calibration is None else (768, 576)) for i in range(60)]


def test_a_calibration_moves_the_anchor_to_the_feet_and_the_crossing_to_when_the_feet_cross():
    from models.calibration import BoxCalibration

    doubled = BoxCalibration(input_size=(768, 768), heights=(60.0,), scales=(2.0,))
    # feet at y = 200 + 4i: they pass y=300 at i=26 (y=304); the knee-high box bottom (feet - 25) only at i=32
    assert crossings(_walk_down()) == [(1, "in", 32, "person")]
    results = _walk_down(doubled)
    assert crossings(results) == [(1, "in", 26, "person")]
    # tracking and the reported boxes are the model's own
    np.testing.assert_allclose(results[10].tracked.xyxy[0], [390, 165, 410, 215])


def test_a_calibration_needs_the_frame_size():
    from models.calibration import BoxCalibration

    with pytest.raises(ValueError, match="frame size"):
        camera().update(0, 0, people((10, 10)), BoxCalibration(input_size=(8, 8), heights=(1.0,), scales=(1.0,)))


# --- which boxes move a line's anchor: confident ones only (min_anchor_confidence) ------------------------------
def _person_at(x: float, confidence: float) -> Detections:
    return Detections(np.array([(x - 20, 300, x + 20, 400)], np.float32), np.array([confidence]), np.zeros(1))


def _standing_with_weak_boxes_across_the_line(**line):
    """A person standing 8 px left of L1 (x=384); on frames 10-12 the detector only gives weak (0.2) boxes, 8 px
    right of the line: matched by the tracker's low-confidence stage, so the track keeps its id throughout."""
    counter = CameraCounter(CameraConfig(camera_id="cam-1", lines=[LineConfig(name="L1", start=(384, 0),
                                                                               end=(384, 576), **line)]), CLASSES)
    frames = {i: _person_at(392, 0.2) if 10 <= i <= 12 else _person_at(376, 0.9) for i in range(20)}
    return run(counter, frames)


def test_a_weak_box_past_the_line_does_not_move_the_anchor_across_it():
    results = _standing_with_weak_boxes_across_the_line()
    assert {int(t) for r in results[10:13] for t in r.tracked.tracker_id} == {1}
    assert crossings(results) == []


def test_with_min_anchor_confidence_zero_every_tracked_box_moves_the_anchor():
    results = _standing_with_weak_boxes_across_the_line(min_anchor_confidence=0.0, min_stay_ms=0)
    assert crossings(results) == [(1, "out", 10, "person"), (1, "in", 13, "person")]


def test_a_crossing_seen_only_in_weak_boxes_counts_on_the_first_confident_frame_past_the_line():
    # x = 300 + 5i crosses 384 at i=17; frames 15-19 (x 375..395) only have weak boxes
    frames = {i: _person_at(300 + 5 * i, 0.2 if 15 <= i <= 19 else 0.9) for i in range(30)}
    assert crossings(run(camera(), frames)) == [(1, "out", 20, "person")]


# --- minimum stay (the lines above use none) ---------------------------------------------------------------------
def _walk_over_l1_and_out_of_view(stay_ms: int, last_frame: int) -> tuple[CameraCounter, list]:
    """x = 300 + 5i crosses L1 (x=384) at i=17; the person is last seen at ``last_frame``."""
    counter = CameraCounter(CameraConfig(camera_id="cam-1", lines=[LineConfig(name="L1", start=(384, 0), end=(384, 576),
                                                                               min_stay_ms=stay_ms)]), CLASSES)
    frames = {i: people((300 + 5 * i, 400)) if i <= last_frame else Detections.empty() for i in range(last_frame + 60)}
    return counter, run(counter, frames)


def test_a_person_who_crosses_and_leaves_before_the_stay_is_over_counts_when_the_track_is_dropped():
    counter, results = _walk_over_l1_and_out_of_view(stay_ms=2000, last_frame=22)  # 200 ms past the line
    assert crossings(results) == [(1, "out", 17, "person")]
    assert counter.tracker.alive_ids().size == 0


def test_the_end_of_a_source_counts_the_crossings_still_waiting_for_their_stay():
    counter = CameraCounter(CameraConfig(camera_id="cam-1", lines=[LineConfig(name="L1", start=(384, 0), end=(384, 576),
                                                                               min_stay_ms=2000)]), CLASSES)
    assert crossings(run(counter, {i: people((300 + 5 * i, 400)) for i in range(25)})) == []
    assert crossings([counter.end(24, 24 * 40)]) == [(1, "out", 17, "person")]


# --- the end of a source ------------------------------------------------------------------------------------------
def test_the_end_of_a_source_empties_its_zones_with_an_exit_for_each_track_inside():
    counter = camera()
    run(counter, {i: people((100, 400), (500, 400)) for i in range(10)})  # one inside Z (x < 384), one outside
    ended = counter.end(9, 360)  # the track was confirmed, and so entered, at frame 2 (80 ms)
    assert ended.zones == {"Z": {"person": 0}}
    assert [(e.kind, e.track_id, e.frame_seq, e.dwell_ms) for e in ended.zone_events] == [("exit", 1, 9, 280)]


def test_after_the_end_a_person_gets_a_new_track_id_and_counts_again():
    counter = camera()
    first = run(counter, {i: people((300 + 5 * i, 400)) for i in range(40)})
    counter.end(39, 39 * 40)
    again = run(counter, {100 + i: people((300 + 5 * i, 400)) for i in range(40)})
    assert crossings(first) == [(1, "out", 17, "person")]
    assert crossings(again) == [(2, "out", 117, "person")]


def test_an_end_repeated_at_the_same_frame_ends_nothing_more():
    counter = CameraCounter(CameraConfig(camera_id="cam-1", lines=[LineConfig(name="L1", start=(384, 0), end=(384, 576),
                                                                               min_stay_ms=2000)]), CLASSES)
    run(counter, {i: people((300 + 5 * i, 400)) for i in range(25)})
    assert crossings([counter.end(24, 960)]) == [(1, "out", 17, "person")]
    assert crossings([counter.end(24, 960)]) == []


def test_an_end_marker_older_than_the_last_frame_is_late_and_ends_nothing():
    counter = camera()
    run(counter, {i: people((300 + 5 * i, 400)) for i in range(10)})
    assert counter.end(5, 200) is None
    assert counter.late_frames == 1 and counter.tracker.alive_ids().tolist() == [1]


# --- a stalled camera ---------------------------------------------------------------------------------------------
def _walk_with_a_stall(gap_ms: int, **tracker) -> list:
    """A person walks right over L1 (x = 300 + 5i, crossing at frame 17), frames 40 ms apart except frames 10 and
    11, captured ``gap_ms`` apart; frame 11, one seq later, shows the person 5 px further on."""
    counter = camera(tracker=TrackerConfig(**tracker))
    results = [counter.update(i, i * 40, people((300 + 5 * i, 400))) for i in range(11)]
    return results + [counter.update(i, i * 40 - 40 + gap_ms, people((300 + 5 * i, 400))) for i in range(11, 40)]


def test_a_frame_captured_after_a_stall_longer_than_max_stall_ms_starts_every_track_afresh():
    results = _walk_with_a_stall(10_001)
    assert {int(t) for t in results[10].tracked.tracker_id} == {1}
    assert {int(t) for r in results[13:] for t in r.tracked.tracker_id if t >= 0} == {2}
    assert crossings(results) == [(2, "out", 17, "person")]  # the new track starts before the line


def test_a_stall_no_longer_than_max_stall_ms_keeps_the_track():
    results = _walk_with_a_stall(10_000)
    assert {int(t) for r in results for t in r.tracked.tracker_id if t >= 0} == {1}


def test_the_crossings_waiting_when_a_camera_stalls_are_counted_on_the_frame_after_the_stall():
    counter = CameraCounter(CameraConfig(camera_id="cam-1", lines=[LineConfig(name="L1", start=(384, 0), end=(384, 576),
                                                                               min_stay_ms=2000)]), CLASSES)
    run(counter, {i: people((300 + 5 * i, 400)) for i in range(20)})  # crossed at 17, waiting for its stay
    after = counter.update(20, 20 * 40 + 60_000, people((300, 400)))
    assert crossings([after]) == [(1, "out", 17, "person")]


def test_with_max_stall_ms_zero_a_track_survives_any_stall():
    results = _walk_with_a_stall(3_600_000, max_stall_ms=0)
    assert {int(t) for r in results for t in r.tracked.tracker_id if t >= 0} == {1}
