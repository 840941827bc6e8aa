"""The camera ingestor on the real broker: keys, headers, sequence numbers across restarts, the end marker."""

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
    records = sorted(_frames(settings, 4), key=lambda f: f["_offset"])
    frames, end = records[:3], records[3]
    assert [f["frame_seq"] for f in frames] == sorted(f["frame_seq"] for f in frames)
    for record in records:
        headers = record["_headers"]
        assert headers["camera-id"] == b"gate-7"
        assert int(headers["frame-seq"]) == record["frame_seq"]
        assert int(headers["capture-ts-ms"]) == record["capture_ts_ms"]
        assert headers["camcount-schema-version"] == b"2"
        assert headers["variant"] == b"" and record["variant"] == ""
        assert (record["width"], record["height"]) == (768, 576)
    assert not any(f["end_of_stream"] for f in frames)
    assert end["end_of_stream"] and end["frame_seq"] == frames[-1]["frame_seq"] and end["image"] == b""
    assert len({f["_partition"] for f in records}) == 1


def test_a_restarted_ingestor_continues_above_the_sequence_numbers_of_its_previous_run(isolated_settings, tmp_path):
    settings = isolated_settings(1)
    processes = CamcountProcesses(settings, tmp_path)
    for _ in range(2):
        result = processes.run("ingest", "--camera-id", "gate-8", "--source", str(footage_path()), "--fps", "0",
                               "--max-frames", "3")
        assert result.returncode == 0, result.stderr
    records = sorted(_frames(settings, 8), key=lambda f: f["_offset"])  # two runs of 3 frames and an end marker
    seqs = [f["frame_seq"] for f in records if not f["end_of_stream"]]
    assert seqs == sorted(seqs) and len(set(seqs)) == 6
