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


def test_a_models_box_calibration_survives_the_detections_record():
    from models.calibration import BoxCalibration
    from schemas import DETECTIONS
    from stream_apps.records import calibration_from_record, calibration_to_record

    calibration = BoxCalibration(input_size=(608, 608), heights=(40.0, 75.0), scales=(1.9, 1.04))
    record = {**RECORD, "capture_ts_ms": 0, "width": 384, "height": 288, "status": "OK", "model_name": "m",
              "model_version": "1", "box_calibration": calibration_to_record(calibration)}

    assert calibration_from_record(DETECTIONS.decode(DETECTIONS.encode(record))) == calibration


def test_a_record_carrying_an_invalid_box_calibration_is_undecodable():
    from stream_apps.records import check_detections_record

    broken = {"input_width": 608, "input_height": 608, "heights": [75.0, 40.0], "scales": [1.0, 1.9]}

    with pytest.raises(UndecodablePayload, match="invalid box calibration"):
        check_detections_record({**RECORD, "box_calibration": broken})
