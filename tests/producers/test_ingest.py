"""The camera ingestor on the real broker: keys, headers, sequence numbers across restarts."""

from __future__ import annotations

import pytest

from schemas import FRAME
from tests.pipeline import CamcountProcesses, consume_records, footage_path

pytestmark = [pytest.mark.integration]


def _frames(settings, count):
    return consume_records(settings, settings.kafka.frames_topic, lambda rs: len(rs) >= count, timeout_s=30,
                           decode=lambda value, headers: FRAME.decode(value, headers))


def test_frames_are_keyed_by_camera_and_carry_tracing_headers(isolated_settings, tmp_path):
    settings = isolated_settings(2)
    result = CamcountProcesses(settings, tmp_path).run("ingest", "--camera-id", "gate-7", "--source",
                                                        str(footage_path()), "--fps", "0", "--max-frames", "3")
    assert result.returncode == 0, result.stderr
    frames = _frames(settings, 3)
    assert [f["frame_seq"] for f in frames] == sorted(f["frame_seq"] for f in frames)
    for frame in frames:
        headers = frame["_headers"]
        assert headers["camera-id"] == b"gate-7"
        assert int(headers["frame-seq"]) == frame["frame_seq"]
        assert int(headers["capture-ts-ms"]) == frame["capture_ts_ms"]
        assert headers["camcount-schema-version"] == b"1"
        assert headers["variant"] == b"" and frame["variant"] == ""
        assert (frame["width"], frame["height"]) == (768, 576)
    assert len({f["_partition"] for f in frames}) == 1


def test_a_restarted_ingestor_continues_above_the_sequence_numbers_of_its_previous_run(isolated_settings, tmp_path):
    settings = isolated_settings(1)
    processes = CamcountProcesses(settings, tmp_path)
    for _ in range(2):
        result = processes.run("ingest", "--camera-id", "gate-8", "--source", str(footage_path()), "--fps", "0",
                               "--max-frames", "3")
        assert result.returncode == 0, result.stderr
    seqs = [f["frame_seq"] for f in sorted(_frames(settings, 6), key=lambda f: f["_offset"])]
    assert seqs == sorted(seqs) and len(set(seqs)) == 6
