"""The counting service over a state table: replays never count twice, old state never crashes a worker."""

from __future__ import annotations

import numpy as np

from counting.config import parse_camera_configs
from stream_apps.counting_app import CountingService

CLASSES = ["person"]
CONFIG = parse_camera_configs({"defaults": {"lines": [{"name": "L", "start": [100, 0], "end": [100, 200]}],
                                            "tracker": {"min_hits": 1}}})


def _record(seq: int, x: float) -> dict:
    return {"camera_id": "cam", "frame_seq": seq, "capture_ts_ms": 60_000 + seq * 100, "width": 200,
            "height": 200, "status": "OK", "model_name": "m", "model_version": "1.0.0", "variant": "",
            "experiment": "", "xyxy": [x - 10, 50, x + 10, 150], "confidence": [0.9], "class_id": [0],
            "class_names": CLASSES, "infer_ms": 1.0, "source_partition": 0, "source_offset": seq}


def _walk(service: CountingService, seqs) -> list:
    crossings = []
    for seq in seqs:
        counted = service.handle(_record(seq, 40 + 10 * seq))
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
