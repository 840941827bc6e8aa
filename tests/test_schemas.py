"""Every topic's Avro schema, with its name and version carried in headers."""

from __future__ import annotations

import pytest

from schemas import CROSSING, DETECTIONS, FRAME, WINDOW_COUNT, UndecodablePayload, UnknownSchemaVersion


def _frame() -> dict:
    return {"camera_id": "cam-1", "frame_seq": 7, "capture_ts_ms": 1_700_000_000_000, "width": 4, "height": 3,
            "encoding": "jpeg", "image": b"\xff\xd8", "variant": "b", "experiment": "exp-1"}


def test_a_frame_round_trips_through_avro():
    assert FRAME.decode(FRAME.encode(_frame()), dict(FRAME.headers())) == _frame()


def test_an_unknown_schema_version_is_refused_with_what_to_do():
    headers = dict(FRAME.headers())
    headers["camcount-schema-version"] = b"2"
    with pytest.raises(UnknownSchemaVersion, match="upgrade this consumer"):
        FRAME.decode(FRAME.encode(_frame()), headers)


def test_a_message_of_another_schema_is_refused():
    with pytest.raises(UnknownSchemaVersion, match="expected schema frame"):
        FRAME.decode(FRAME.encode(_frame()), dict(DETECTIONS.headers()))


def test_garbage_is_reported_as_undecodable():
    with pytest.raises(UndecodablePayload):
        FRAME.decode(b"\x02\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", dict(FRAME.headers()))


@pytest.mark.parametrize("codec", [FRAME, DETECTIONS, CROSSING, WINDOW_COUNT], ids=lambda c: c.name)
def test_every_downstream_schema_carries_provenance_fields(codec):
    fields = {f["name"] for f in codec.parsed["fields"]}
    assert {"camera_id"} <= fields
    if codec is not FRAME:
        assert {"model_name", "model_version", "variant", "experiment"} <= fields
        assert fields & {"capture_ts_ms", "window_start_ms"}
    if codec in (DETECTIONS, CROSSING):
        assert {"frame_seq", "capture_ts_ms"} <= fields
