"""Topic records to the counting core's types: a detections record whose box arrays disagree is refused, classified."""

import pytest

from schemas import UndecodablePayload
from stream_apps.records import detections_from_record

RECORD = {"camera_id": "cam", "frame_seq": 7, "xyxy": [0.0, 0.0, 10.0, 20.0], "confidence": [0.9], "class_id": [0]}


def test_a_consistent_record_gives_one_box_per_confidence():
    detections = detections_from_record(RECORD)

    assert detections.xyxy.tolist() == [[0.0, 0.0, 10.0, 20.0]] and detections.class_id.tolist() == [0]


@pytest.mark.parametrize("broken", [{"xyxy": [0.0, 0.0, 10.0]}, {"class_id": []}, {"confidence": [0.9, 0.8]}],
                         ids=["three-coordinates", "missing-class-id", "extra-confidence"])
def test_a_record_whose_box_arrays_disagree_is_undecodable(broken):
    with pytest.raises(UndecodablePayload, match="want 4 per box"):
        detections_from_record({**RECORD, **broken})
