"""Every topic's Avro schema, with its name and version carried in headers; a consumer reads every version up to
its own, so records of the previous release still decode, and refuses newer ones."""

from __future__ import annotations

import pytest

from schemas import (
    CROSSING,
    DETECTIONS,
    FRAME,
    SCHEMA_VERSION_HEADER,
    SHADOW_PAIR,
    WINDOW_COUNT,
    ZONE_OCCUPANCY,
    AvroCodec,
    UndecodablePayload,
    UnknownSchemaVersion,
)

CODECS = [FRAME, DETECTIONS, CROSSING, WINDOW_COUNT, ZONE_OCCUPANCY, SHADOW_PAIR]

# Records as the previous release wrote them (schema v1), and what a v2 consumer fills in for the fields v2 added.
PREVIOUS_RELEASE = {
    "window-count": ({"camera_id": "cam-1", "window_start_ms": 1_700_000_040_000, "window_seconds": 60, "line": "L",
                      "class_name": "person", "direction": "in", "variant": "", "experiment": "", "model_name": "m",
                      "model_version": "1.0.0", "count": 3, "updated_ms": 1_700_000_050_000},
                     {"last_frame_seq": -1, "last_capture_ts_ms": -1}),
    "zone-occupancy": ({"camera_id": "cam-1", "zone": "door", "class_name": "person",
                        "minute_ms": 1_700_000_040_000, "frames": 5, "max_occupancy": 1, "occupancy_sum": 3,
                        "entries": 1, "exits": 0, "dwell_ms_sum": 0, "model_name": "m", "model_version": "1.0.0",
                        "variant": "", "experiment": "", "updated_ms": 1_700_000_050_000},
                       {"last_frame_seq": -1, "last_capture_ts_ms": -1}),
    "shadow-pair": ({"experiment": "exp", "camera_id": "cam-1", "frame_seq": 7, "capture_ts_ms": 1_700_000_045_000,
                     "control_variant": "control", "candidate_variant": "int8", "control_model_version": "1.0.0",
                     "candidate_model_version": "1.0.0-int8", "control_detections": 1, "candidate_detections": 1,
                     "matched_boxes": 1, "control_infer_ms": 9.0, "candidate_infer_ms": 4.0},
                    {"control_model_name": "", "candidate_model_name": ""}),
}


def _frame() -> dict:
    return {"camera_id": "cam-1", "frame_seq": 7, "capture_ts_ms": 1_700_000_000_000, "width": 4, "height": 3,
            "encoding": "jpeg", "image": b"\xff\xd8", "variant": "b", "experiment": "exp-1", "end_of_stream": False}


def _version(codec: AvroCodec, version: int) -> AvroCodec:
    """``codec`` as it was at ``version``: the writer a producer of that release used."""
    file = codec.file if version == codec.version else codec.file.replace(".avsc", f".v{version}.avsc")
    return AvroCodec(codec.name, version, file)


def _fields(codec: AvroCodec) -> dict[str, dict]:
    return {field["name"]: field for field in codec.parsed["fields"]}


def test_a_frame_round_trips_through_avro():
    assert FRAME.decode(FRAME.encode(_frame()), dict(FRAME.headers())) == _frame()


def test_a_current_window_count_round_trips_with_the_frame_it_traces_to():
    record = {**PREVIOUS_RELEASE["window-count"][0], "last_frame_seq": 41, "last_capture_ts_ms": 1_700_000_044_100}
    assert WINDOW_COUNT.decode(WINDOW_COUNT.encode(record), dict(WINDOW_COUNT.headers())) == record


@pytest.mark.parametrize("codec", [WINDOW_COUNT, ZONE_OCCUPANCY, SHADOW_PAIR], ids=lambda c: c.name)
def test_a_record_of_the_previous_release_decodes_as_the_current_version_with_the_new_fields_unknown(codec):
    record, unknown = PREVIOUS_RELEASE[codec.name]
    previous = _version(codec, 1)
    assert codec.version == 2
    assert codec.decode(previous.encode(record), dict(previous.headers())) == {**record, **unknown}


def test_a_frame_of_the_previous_release_decodes_as_a_frame_not_an_end_marker():
    previous = _version(FRAME, 1)
    record = {key: value for key, value in _frame().items() if key != "end_of_stream"}
    assert FRAME.decode(previous.encode(record), dict(previous.headers())) == {**record, "end_of_stream": False}


def test_detections_of_the_previous_release_decode_unchanged_and_only_the_current_version_has_the_end_status():
    previous = _version(DETECTIONS, DETECTIONS.version - 1)
    record = {"camera_id": "cam-1", "frame_seq": 7, "capture_ts_ms": 1_700_000_000_000, "width": 4, "height": 3,
              "status": "SKIPPED", "model_name": "m", "model_version": "1.0.0", "variant": "", "experiment": "",
              "xyxy": [], "confidence": [], "class_id": [], "class_names": ["person"], "infer_ms": 0.0,
              "inferred_ts_ms": 1_700_000_000_050, "source_partition": 0, "source_offset": 3, "fallback": False,
              "box_calibration": None}
    assert DETECTIONS.decode(previous.encode(record), dict(previous.headers())) == record
    with pytest.raises(ValueError):
        previous.encode({**record, "status": "END"})
    assert DETECTIONS.decode(DETECTIONS.encode({**record, "status": "END"}))["status"] == "END"


def test_a_version_newer_than_the_consumer_knows_is_refused_with_what_to_do():
    headers = {**dict(WINDOW_COUNT.headers()), SCHEMA_VERSION_HEADER: b"3"}
    record = {**PREVIOUS_RELEASE["window-count"][0], "last_frame_seq": 1, "last_capture_ts_ms": 1}
    with pytest.raises(UnknownSchemaVersion, match="v1 to v2, got window-count v3: upgrade this consumer"):
        WINDOW_COUNT.decode(WINDOW_COUNT.encode(record), headers)


def test_an_unknown_schema_version_is_refused_with_what_to_do():
    headers = dict(FRAME.headers())
    headers["camcount-schema-version"] = b"3"
    with pytest.raises(UnknownSchemaVersion, match="upgrade this consumer"):
        FRAME.decode(FRAME.encode(_frame()), headers)


def test_a_message_of_another_schema_is_refused():
    with pytest.raises(UnknownSchemaVersion, match="expected schema frame"):
        FRAME.decode(FRAME.encode(_frame()), dict(DETECTIONS.headers()))


def test_garbage_is_reported_as_undecodable():
    with pytest.raises(UndecodablePayload):
        FRAME.decode(b"\x02\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", dict(FRAME.headers()))


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_every_field_added_since_an_earlier_version_has_a_default(codec):
    for version in range(1, codec.version):
        added = _fields(codec).keys() - _fields(_version(codec, version)).keys()
        assert all("default" in _fields(codec)[name] for name in added), (version, added)


# Every record downstream of inference traces to camera, frame(s) and capture time, model name and version, and
# variant (and experiment); a per-minute or per-window aggregate names the latest frame that changed it.
TRACED_BY = {
    "detections": {"camera_id", "frame_seq", "capture_ts_ms", "model_name", "model_version", "variant", "experiment"},
    "crossing": {"camera_id", "frame_seq", "capture_ts_ms", "model_name", "model_version", "variant", "experiment"},
    "window-count": {"camera_id", "last_frame_seq", "last_capture_ts_ms", "model_name", "model_version", "variant",
                     "experiment"},
    "zone-occupancy": {"camera_id", "last_frame_seq", "last_capture_ts_ms", "model_name", "model_version", "variant",
                       "experiment"},
    "shadow-pair": {"camera_id", "frame_seq", "capture_ts_ms", "experiment", "control_variant", "candidate_variant",
                    "control_model_name", "candidate_model_name", "control_model_version",
                    "candidate_model_version"},
}


@pytest.mark.parametrize("codec", [c for c in CODECS if c is not FRAME], ids=lambda c: c.name)
def test_every_downstream_schema_carries_provenance_fields(codec):
    assert TRACED_BY[codec.name] <= _fields(codec).keys()
