"""The counting service over a state table: replays never count twice, old state never crashes a worker, and a
frame's state is stored only after its outputs were published."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from counting.config import parse_camera_configs
from schemas import FRAME
from stream_apps.counting_app import CountedFrame, CountingService, Publish

CLASSES = ["person"]
# min_stay_ms 0: a walk counts on the frame it crosses (the counting rules themselves are tests/counting's)
LINE_L = {"name": "L", "start": [100, 0], "end": [100, 200], "min_stay_ms": 0}
LINE_H = {"name": "H", "start": [0, 190], "end": [200, 190], "min_stay_ms": 0}
CONFIG = parse_camera_configs({"defaults": {"lines": [LINE_L], "tracker": {"min_hits": 1}}})


def _record(seq: int, x: float, class_names: list[str] = CLASSES, class_id: int = 0) -> dict:
    return {"camera_id": "cam", "frame_seq": seq, "capture_ts_ms": 60_000 + seq * 100, "width": 200,
            "height": 200, "status": "OK", "model_name": "m", "model_version": "1.0.0", "variant": "",
            "experiment": "", "xyxy": [x - 10, 50, x + 10, 150], "confidence": [0.9], "class_id": [class_id],
            "class_names": class_names, "infer_ms": 1.0, "source_partition": 0, "source_offset": seq}


async def _delivered(counted: CountedFrame) -> None:
    """A broker that acknowledges every output."""


def _handle(service: CountingService, record: dict, publish: Publish = _delivered,
            silence: bool = False) -> CountedFrame | None:
    return asyncio.run(service.handle(record, publish, silence))


def _walk(service: CountingService, seqs) -> list:
    crossings = []
    for seq in seqs:
        counted = _handle(service, _record(seq, 40 + 10 * seq))
        crossings += counted.crossings if counted else []
    return crossings


def test_a_person_walking_across_the_line_counts_once_with_a_window_total():
    service = CountingService(CONFIG, 60, {})
    crossings = _walk(service, range(12))
    assert [(c["line"], c["direction"]) for c in crossings] == [("L", "out")]


def test_replayed_frames_after_a_restart_do_not_count_again():
    table: dict = {}
    first = _walk(CountingService(CONFIG, 60, table), range(12))
    replayed = _walk(CountingService(CONFIG, 60, table), range(12))  # a new worker, same table, same frames
    assert len(first) == 1 and replayed == []


def test_a_restart_mid_walk_resumes_from_the_table_and_counts_exactly_once():
    table: dict = {}
    before = _walk(CountingService(CONFIG, 60, table), range(5))
    after = _walk(CountingService(CONFIG, 60, table), range(3, 12))  # the uncommitted tail is redelivered
    assert before == [] and len(after) == 1


def test_state_from_an_incompatible_version_starts_the_camera_afresh_instead_of_crashing():
    table = {"cam": {"counter": {"version": -1}, "windows": {}}}
    assert len(_walk(CountingService(CONFIG, 60, table), range(12))) == 1
    assert np.isfinite(table["cam"]["counter"]["last_seq"])


def test_the_table_holds_the_previous_frame_while_a_frame_s_outputs_are_published():
    table: dict = {}
    service = CountingService(CONFIG, 60, table)
    _walk(service, range(5))
    seen_while_publishing = []

    async def publish(counted: CountedFrame) -> None:
        seen_while_publishing.append(table["cam"]["counter"]["last_seq"])

    _handle(service, _record(5, 90), publish)
    assert seen_while_publishing == [4] and table["cam"]["counter"]["last_seq"] == 5


def test_a_frame_whose_outputs_were_not_delivered_is_counted_again_when_redelivered():
    service = CountingService(CONFIG, 60, {})
    delivered = _walk(service, range(7))

    async def broker_down(counted: CountedFrame) -> None:
        raise ConnectionError("broker unreachable")

    with pytest.raises(ConnectionError):
        _handle(service, _record(7, 110), broker_down)  # the frame on which the crossing is confirmed
    redelivered = _handle(service, _record(7, 110))
    assert delivered == [] and [(c["frame_seq"], c["direction"]) for c in redelivered.crossings] == [(7, "out")]


def test_a_hot_swap_to_a_model_listing_its_classes_in_another_order_keeps_a_car_a_car():
    config = parse_camera_configs({"defaults": {"classes": ["person", "car"], "tracker": {"min_hits": 1},
                                                "lines": [LINE_L]}})
    service = CountingService(config, 60, {})
    old, new = ["person", "car"], ["car", "person"]
    crossings = []
    for seq in range(12):
        names = old if seq < 3 else new  # the swap happens mid-walk, before the car reaches the line
        counted = _handle(service, _record(seq, 40 + 10 * seq, names, class_id=names.index("car")))
        crossings += counted.crossings if counted else []
    assert [(c["class_name"], c["track_id"]) for c in crossings] == [("car", 1)]


def test_every_window_and_zone_row_names_the_frame_whose_counting_produced_it():
    config = parse_camera_configs({"defaults": {"lines": [LINE_L],
                                                "zones": [{"name": "all", "polygon": [[0, 0], [200, 0], [200, 200],
                                                                                      [0, 200]]}],
                                                "tracker": {"min_hits": 1}}})
    service = CountingService(config, 60, {})
    rows = []
    for seq in range(12):
        counted = _handle(service, _record(seq, 40 + 10 * seq))
        rows += [(seq, 60_000 + seq * 100, row) for row in counted.windows + counted.zone_minutes]
    assert {row["line"] for _, _, row in rows if "line" in row} == {"L"} and any("zone" in row for _, _, row in rows)
    assert all((row["last_frame_seq"], row["last_capture_ts_ms"]) == (seq, ts) for seq, ts, row in rows)


def test_each_records_model_calibration_moves_the_anchor_as_offline_does():
    from models.calibration import BoxCalibration

    # a horizontal line at y=190; the box is 100 px tall in a 200x200 frame and scaled x1.5 about its centre for
    # counting, so its calibrated bottom is 25 px below the model's
    config = parse_camera_configs({"defaults": {"lines": [LINE_H],
                                                "tracker": {"min_hits": 1}}})
    asked = []

    def calibrations(name: str, version: str) -> BoxCalibration | None:
        asked.append((name, version))
        return BoxCalibration(input_size=(200, 200), heights=(10.0,), scales=(1.5,))

    def down(seq: int) -> dict:  # walking down the image, 5 px a frame: box bottom 150 + 5 * seq
        record = _record(seq, 100)
        record["xyxy"] = [90, 50 + 5 * seq, 110, 150 + 5 * seq]
        return record

    plain, calibrated = CountingService(config, 60, {}), CountingService(config, 60, {}, calibrations=calibrations)
    first = {}
    for name, service in (("plain", plain), ("calibrated", calibrated)):
        for seq in range(12):
            counted = _handle(service, down(seq))
            if counted and counted.crossings and name not in first:
                first[name] = counted.crossings[0]["frame_seq"]
    # the box bottom 150 + 5 * seq passes y=190 at seq 9 (195), the calibrated one 175 + 5 * seq at seq 4
    assert first == {"plain": 9, "calibrated": 4}
    assert set(asked) == {("m", "1.0.0")}


def test_a_calibration_carried_by_the_record_is_used_without_asking_the_registry():
    config = parse_camera_configs({"defaults": {"lines": [LINE_H],
                                                "tracker": {"min_hits": 1}}})

    def registry_away(name: str, version: str):
        raise AssertionError("the registry was asked although the record carries the calibration")

    def down(seq: int) -> dict:  # as above: the calibrated box bottom 175 + 5 * seq passes y=190 at seq 4
        record = _record(seq, 100)
        record["xyxy"] = [90, 50 + 5 * seq, 110, 150 + 5 * seq]
        record["box_calibration"] = {"input_width": 200, "input_height": 200, "heights": [10.0], "scales": [1.5]}
        return record

    service = CountingService(config, 60, {}, calibrations=registry_away)
    crossed = [seq for seq in range(12) if (counted := _handle(service, down(seq))) and counted.crossings]

    assert crossed[:1] == [4]


# --- a camera's end of stream -------------------------------------------------------------------------------------
STAYING = parse_camera_configs({"defaults": {"lines": [{**LINE_L, "min_stay_ms": 5_000}], "tracker": {"min_hits": 1},
                                             "zones": [{"name": "Z", "polygon": [[0, 0], [200, 0], [200, 200],
                                                                                 [0, 200]]}]}})


def _end(seq: int) -> dict:
    return {**_record(seq, 0), "status": "END", "xyxy": [], "confidence": [], "class_id": []}


def test_an_end_record_counts_the_crossings_waiting_for_their_stay_and_empties_and_emits_the_zones():
    service = CountingService(STAYING, 60, {})
    assert _walk(service, range(8)) == []  # crossed at frame 7 (x 110), 5 s of stay to go
    ended = _handle(service, _end(7))
    assert ended.stream_ended and not _handle(service, _record(8, 120)).stream_ended
    assert [(c["line"], c["direction"], c["frame_seq"]) for c in ended.crossings] == [("L", "out", 7)]
    assert ended.zones == {"Z": {"person": 0}}
    assert [(r["frames"], r["exits"], r["last_frame_seq"]) for r in ended.zone_minutes] == [(8, 1, 7)]


def test_an_end_record_redelivered_after_its_state_was_stored_counts_nothing_again():
    table: dict = {}
    _walk(CountingService(STAYING, 60, table), range(8))
    first = _handle(CountingService(STAYING, 60, table), _end(7))
    again = _handle(CountingService(STAYING, 60, table), _end(7))  # a new worker, the end redelivered
    assert len(first.crossings) == 1 and again.crossings == []


def test_an_end_record_not_stored_because_its_outputs_failed_counts_the_same_crossing_when_redelivered():
    table: dict = {}
    service = CountingService(STAYING, 60, table)
    _walk(service, range(8))

    async def broker_away(counted: CountedFrame) -> None:
        raise ConnectionError("broker away")

    with pytest.raises(ConnectionError):
        _handle(service, _end(7), broker_away)
    redelivered = _handle(CountingService(STAYING, 60, table), _end(7))
    assert [c["frame_seq"] for c in redelivered.crossings] == [7]



SILENT_MS = 120_000


def _silent_ends(service: CountingService, after_ms: int) -> list[tuple[int, dict]]:
    """The (frames partition, end-of-stream marker) ``service`` would send ``after_ms`` from now, its silence limit
    being SILENT_MS."""
    return service.silent_camera_ends(int(time.time() * 1000) + after_ms, SILENT_MS)


def test_a_camera_silent_longer_than_the_limit_gets_a_marker_repeating_its_last_frame_on_its_frames_partition():
    service = CountingService(STAYING, 60, {})
    _walk(service, range(7))
    _handle(service, {**_record(7, 110), "source_partition": 3})
    assert _silent_ends(service, SILENT_MS - 1_000) == []
    [(partition, marker)] = _silent_ends(service, SILENT_MS + 1_000)
    assert partition == 3
    assert FRAME.decode(FRAME.encode(marker)) == {
        "camera_id": "cam", "frame_seq": 7, "capture_ts_ms": _record(7, 110)["capture_ts_ms"], "width": 200,
        "height": 200, "encoding": "jpeg", "image": b"", "variant": "", "experiment": "", "end_of_stream": True}


def test_a_camera_whose_stream_ended_gets_no_marker_for_its_silence():
    service = CountingService(STAYING, 60, {})
    _walk(service, range(8))
    _handle(service, _end(7))
    assert _silent_ends(service, 10 * SILENT_MS) == []


def test_a_delivered_marker_is_not_sent_again_for_the_same_frame_until_another_limit_has_passed():
    service = CountingService(STAYING, 60, {})
    _walk(service, range(8))
    [(_, marker)] = _silent_ends(service, SILENT_MS + 1_000)
    service.end_sent(marker, int(time.time() * 1000) + SILENT_MS + 1_000)
    assert _silent_ends(service, SILENT_MS + 2_000) == []
    assert [m["frame_seq"] for _, m in _silent_ends(service, 2 * SILENT_MS + 2_000)] == [7]


def test_the_end_of_a_silent_camera_counts_the_waiting_crossing_without_saying_the_stream_ended():
    service = CountingService(STAYING, 60, {})
    _walk(service, range(8))  # crossed at frame 7, its stay not over
    counted = _handle(service, _end(7), silence=True)  # the marker, back from a worker
    assert [(c["line"], c["direction"], c["frame_seq"]) for c in counted.crossings] == [("L", "out", 7)]
    assert not counted.stream_ended and counted.zones == {"Z": {"person": 0}}
    assert _silent_ends(service, 10 * SILENT_MS) == []


def test_a_silence_marker_that_comes_back_after_a_later_frame_of_the_camera_ends_nothing():
    service = CountingService(STAYING, 60, {})
    _walk(service, range(8))
    _handle(service, _record(8, 120))  # a frame queued before the marker (a worker was behind)
    assert _handle(service, _end(7), silence=True) is None
    assert [c["frame_seq"] for c in _handle(service, _end(40)).crossings] == [7]  # the walk's track lived on


def test_a_restarted_worker_finds_the_silent_camera_in_the_table():
    table: dict = {}
    _walk(CountingService(STAYING, 60, table), range(8))
    assert [m["frame_seq"] for _, m in _silent_ends(CountingService(STAYING, 60, table), SILENT_MS + 1_000)] == [7]


def test_a_camera_whose_records_name_no_frames_partition_gets_no_marker():
    service = CountingService(STAYING, 60, {})
    _handle(service, {**_record(0, 40), "source_partition": -1})
    assert _silent_ends(service, 10 * SILENT_MS) == []
