"""ByteTrack-family tracker on synthetic boxes."""

import json

import numpy as np
import pytest

from counting.config import TrackerConfig
from counting.tracker import Tracker
from models.detections import Detections


def boxes(*people: tuple[float, float], confidence: float = 0.9, class_id: int = 0,
          size: tuple[float, float] = (40.0, 100.0)) -> Detections:
    """Detections of people given by bottom-centre (x, y)."""
    w, h = size
    xyxy = [(x - w / 2, y - h, x + w / 2, y) for x, y in people]
    return Detections(np.array(xyxy, np.float32).reshape(-1, 4), np.full(len(people), confidence),
                      np.full(len(people), class_id))


def ids_over(tracker: Tracker, frames: list[Detections]) -> list[list[int]]:
    return [tracker.update(frame).tracker_id.tolist() for frame in frames]


def test_walker_gets_an_id_on_its_min_hits_th_frame_and_keeps_it():
    tracker = Tracker(TrackerConfig(min_hits=3))
    assert ids_over(tracker, [boxes((100 + 5 * i, 300)) for i in range(6)]) == [[-1], [-1], [1], [1], [1], [1]]


def test_ids_are_issued_from_one_in_creation_order():
    tracker = Tracker(TrackerConfig(min_hits=1))
    frames = [boxes((100, 300)), boxes((102, 300), (400, 300)), boxes((104, 300), (402, 300), (700, 300))]
    assert ids_over(tracker, frames)[-1] == [1, 2, 3]


def test_boxes_of_different_classes_never_continue_each_others_tracks():
    tracker = Tracker(TrackerConfig(min_hits=1))
    tracker.update(boxes((100, 300), class_id=0))
    assert tracker.update(boxes((100, 300), class_id=2)).tracker_id.tolist() == [2]


def test_low_confidence_box_continues_a_track():
    tracker = Tracker(TrackerConfig(min_hits=1))
    tracker.update(boxes((100, 300)))
    assert tracker.update(boxes((101, 300), confidence=0.3)).tracker_id.tolist() == [1]


def test_low_confidence_box_never_starts_a_track():
    tracker = Tracker(TrackerConfig(min_hits=1))
    assert ids_over(tracker, [boxes((100, 300), confidence=0.3)] * 3) == [[-1], [-1], [-1]]


def test_box_below_new_track_threshold_does_not_start_a_track():
    tracker = Tracker(TrackerConfig(min_hits=1, high_threshold=0.5, new_track_threshold=0.7))
    assert tracker.update(boxes((100, 300), confidence=0.6)).tracker_id.tolist() == [-1]


def test_occluded_walker_is_refound_with_the_same_id_after_fifteen_frames():
    tracker = Tracker(TrackerConfig(max_gap_frames=30))
    walk = [boxes((100 + 5 * i, 300)) for i in range(60)]
    visible = walk[:25] + [Detections.empty()] * 15 + walk[40:]
    ids = ids_over(tracker, visible)
    assert ids[24] == [1] and all(frame == [1] for frame in ids[40:])


def test_track_unmatched_for_more_than_max_gap_frames_is_dropped():
    tracker = Tracker(TrackerConfig(max_gap_frames=5, min_hits=1))
    ids_over(tracker, [boxes((100, 300))] + [Detections.empty()] * 6)
    assert tracker.alive_ids().tolist() == []


def test_frame_gap_predicts_across_skipped_frames():
    config = TrackerConfig(min_hits=1)
    tracker = Tracker(config)
    for i in range(10):
        tracker.update(boxes((100 + 12 * i, 300)))
    # Five frames later the walker moved 60 px, more than its 40 px width: only prediction finds it.
    assert tracker.update(boxes((100 + 12 * 14, 300)), frame_gap=5).tracker_id.tolist() == [1]


def test_two_people_crossing_paths_keep_their_ids():
    tracker = Tracker(TrackerConfig())
    frames = [boxes((100 + 4 * i, 400), (500 - 4 * i, 405)) for i in range(100)]
    ids = ids_over(tracker, frames)
    assert ids[10] == [1, 2]
    assert all(frame == [1, 2] for frame in ids[10:])


def test_restored_tracker_continues_identically():
    config = TrackerConfig()
    frames = [boxes((100 + 4 * i, 400), (500 - 4 * i, 405)) for i in range(80)]
    frames[40:45] = [Detections.empty()] * 5
    original = Tracker(config)
    ids_over(original, frames[:42])
    restored = Tracker.from_state(json.loads(json.dumps(original.to_state())), config)
    expected = ids_over(original, frames[42:])
    assert ids_over(restored, frames[42:]) == expected
    assert restored.to_state() == original.to_state()


def test_frame_gap_below_one_is_rejected():
    with pytest.raises(ValueError, match="frame_gap must be >= 1"):
        Tracker(TrackerConfig()).update(Detections.empty(), frame_gap=0)


def test_small_walker_moving_more_than_its_width_per_frame_keeps_its_id_with_buffered_iou():
    # 12 px wide, 14 px per frame (a far person at 10 fps): plain IoU with the zero-velocity birth state is 0.
    frames = [boxes((100 + 14 * i, 300), size=(12.0, 40.0)) for i in range(10)]
    assert ids_over(Tracker(TrackerConfig(iou_buffer=0.5)), frames)[2:] == [[1]] * 8


def test_without_the_iou_buffer_a_walker_faster_than_its_width_never_gets_an_id():
    frames = [boxes((100 + 14 * i, 300), size=(12.0, 40.0)) for i in range(10)]
    assert ids_over(Tracker(TrackerConfig(iou_buffer=0.0)), frames) == [[-1]] * 10


def test_first_boxes_are_the_boxes_tracks_started_with_before_they_had_ids():
    tracker = Tracker(TrackerConfig(min_hits=3))
    ids_over(tracker, [boxes((100 + 5 * i, 300)) for i in range(4)])
    assert tracker.first_boxes(np.array([1])).tolist() == [[80.0, 200.0, 120.0, 300.0]]


def test_first_boxes_of_an_id_that_is_not_alive_is_an_error():
    with pytest.raises(ValueError, match="not alive"):
        Tracker(TrackerConfig()).first_boxes(np.array([7]))
