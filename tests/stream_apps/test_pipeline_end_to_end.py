"""The whole pipeline on real parts: broker -> inference -> Faust -> ClickHouse, against in-process counting."""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from camcount.offline import analyze
from counting.config import load_camera_configs
from counting.windows import ZoneMinutes
from models.detector import Detector
from models.registry import ModelRegistry
from producers.sources import FrameSource, SourceFrame
from sinks.redis_live import read_camera
from tests.pipeline import REPO, CamcountProcesses, footage_path

FRAMES = 240
pytestmark = [pytest.mark.slow, pytest.mark.integration]


class _FirstFrames(FrameSource):
    def __init__(self, source: str, limit: int) -> None:
        super().__init__(source)
        self._limit = limit

    def frames(self) -> Iterator[SourceFrame]:
        return itertools.islice(super().frames(), self._limit)


def _offline_crossings(settings, camera_id: str, frames: int = FRAMES) -> Counter:
    detector = Detector.load(ModelRegistry(Path(settings.model_registry())), settings.model.reference,
                             max_batch=settings.inference.max_batch)
    config = load_camera_configs(REPO / settings.counting.cameras).for_camera(camera_id)
    result = analyze(_FirstFrames(str(footage_path()), frames), config, detector,
                     batch_size=settings.inference.max_batch)
    return Counter((c.line, c.direction, c.class_name) for c in result.crossings)


def _wait_counted(settings, cameras: list[str], last_seq: int, timeout_s: float, ended: bool = False) -> None:
    """Until counting saw frame ``last_seq`` of every camera (and, with ``ended``, its end-of-stream marker)."""
    live = redis.Redis.from_url(settings.redis_url())
    prefix = settings.redis.key_prefix
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        states = [read_camera(live, prefix, c) for c in cameras]
        if all(s.get("last_frame_seq", -1) >= last_seq and (s.get("stream_ended") == 1 or not ended) for s in states):
            return
        time.sleep(0.5)
    raise AssertionError(f"cameras {cameras} not counted up to frame {last_seq} within {timeout_s} s")


def _stored_crossings(client, camera_id: str) -> Counter:
    rows = client.execute(
        "SELECT line, direction, class_name, count() FROM crossing_events FINAL WHERE camera_id = %(camera)s "
        "GROUP BY line, direction, class_name", {"camera": camera_id})
    return Counter({(line, direction, cls): n for line, direction, cls, n in rows})


def _wait_stored(client, camera_id: str, expected: Counter, timeout_s: float) -> Counter:
    deadline = time.monotonic() + timeout_s
    stored = Counter()
    while time.monotonic() < deadline:
        stored = _stored_crossings(client, camera_id)
        if stored == expected:
            return stored
        time.sleep(0.5)
    return stored


def test_streamed_counts_equal_offline_counts_even_when_the_counting_worker_is_killed(
    pipeline_settings, tmp_path, clickhouse_client
):
    settings = pipeline_settings(partitions=4)
    suffix = tmp_path.name[-6:]
    cameras = [f"cam-a-{suffix}", f"cam-b-{suffix}"]
    processes = CamcountProcesses(settings, tmp_path)
    client = clickhouse_client(settings)
    try:
        processes.start("infer", "infer")
        counting = processes.start("count", "count")
        for camera in cameras:
            processes.start(f"ingest-{camera}", "ingest", "--camera-id", camera, "--source", str(footage_path()),
                            "--fps", "0", "--first-seq", "0", "--max-frames", str(FRAMES))
        _wait_counted(settings, cameras[:1], FRAMES // 3, timeout_s=180)
        counting.send_signal(signal.SIGKILL)
        counting.wait()
        processes.start("count-restarted", "count")
        _wait_counted(settings, cameras, FRAMES - 1, timeout_s=240)
        expected = _offline_crossings(settings, cameras[0])
        assert sum(expected.values()) > 0, "the footage must contain crossings for this test to mean anything"
        for camera in cameras:
            assert _wait_stored(client, camera, expected, timeout_s=30) == expected, processes.log("count-restarted")
    finally:
        processes.stop_all()


def test_every_frame_gets_one_inference_log_row_with_its_model_version(pipeline_settings, tmp_path,
                                                                       clickhouse_client):
    settings = pipeline_settings(partitions=2)
    camera = f"cam-log-{tmp_path.name[-6:]}"
    processes = CamcountProcesses(settings, tmp_path)
    client = clickhouse_client(settings)
    try:
        processes.start("infer", "infer")
        processes.start("count", "count")
        result = processes.run("ingest", "--camera-id", camera, "--source", str(footage_path()), "--fps", "0",
                               "--first-seq", "0", "--max-frames", "40")
        assert result.returncode == 0, result.stderr
        deadline = time.monotonic() + 120
        rows: list = []
        while time.monotonic() < deadline and len(rows) < 40:
            rows = client.execute("SELECT frame_seq, model_name, model_version, status FROM inference_log FINAL "
                                  "WHERE camera_id = %(c)s ORDER BY frame_seq", {"c": camera})
            time.sleep(0.5)
        assert [r[0] for r in rows] == list(range(40))
        production = ModelRegistry(Path(settings.model_registry())).resolve(settings.model.reference).manifest
        assert {(r[1], r[2]) for r in rows} == {(production.name, production.version)}
        assert {r[3] for r in rows} == {"ok"}  # the end marker after frame 39 is no frame: it has no row
    finally:
        processes.stop_all()


def test_the_counting_app_and_the_worker_serve_metrics_with_their_resource_use_over_http(pipeline_settings, tmp_path):
    import urllib.request

    from tests.services import free_ports

    worker_port = free_ports(1)[0]
    settings = pipeline_settings(partitions=2, metrics_port=worker_port)
    camera = f"cam-http-{tmp_path.name[-6:]}"
    processes = CamcountProcesses(settings, tmp_path)
    base = f"http://127.0.0.1:{settings.counting.web_port}"
    try:
        processes.start("infer", "infer")
        processes.start("count", "count")
        result = processes.run("ingest", "--camera-id", camera, "--source", str(footage_path()), "--fps", "0",
                               "--first-seq", "0", "--max-frames", "20")
        assert result.returncode == 0, result.stderr
        _wait_counted(settings, [camera], 19, timeout_s=120, ended=True)
        with urllib.request.urlopen(f"{base}/readyz", timeout=5) as response:
            assert response.status == 200
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
            counting = response.read().decode()
        with urllib.request.urlopen(f"http://127.0.0.1:{worker_port}/metrics", timeout=5) as response:
            worker = response.read().decode()
    finally:
        processes.stop_all()
    assert f'camcount_count_frames_total{{camera="{camera}"}} 20.0' in counting  # the end marker is no frame
    assert f'camcount_count_stream_ended{{camera="{camera}"}} 1.0' in counting
    for body in (counting, worker):
        samples = dict(line.rsplit(" ", 1) for line in body.splitlines() if line and not line.startswith("#"))
        assert float(samples["process_resident_memory_bytes"]) > 50e6
        assert float(samples["process_cpu_seconds_total"]) > 0
        assert float(samples["camcount_process_threads"]) > 1
        assert 0 < float(samples["camcount_process_cpu_limit_cores"]) <= (os.cpu_count() or 1)  # alert denominators
        assert float(samples["process_resident_memory_bytes"]) < float(samples["camcount_process_memory_limit_bytes"])
        assert "camcount_gpu_memory_used_bytes{" not in body  # this CPU host has no NVML: no GPU series, no error


def test_zone_occupancy_minutes_reach_clickhouse_with_every_counted_frame(pipeline_settings, tmp_path,
                                                                         clickhouse_client):
    settings = pipeline_settings(partitions=2)
    camera = f"cam-zone-{tmp_path.name[-6:]}"
    frames = 50
    emit_every = ZoneMinutes().emit_every  # a minute's latest frames may wait for its next emission
    processes = CamcountProcesses(settings, tmp_path)
    client = clickhouse_client(settings)
    try:
        processes.start("infer", "infer")
        processes.start("count", "count")
        result = processes.run("ingest", "--camera-id", camera, "--source", str(footage_path()), "--fps", "0",
                               "--max-frames", str(frames))
        assert result.returncode == 0, result.stderr
        deadline = time.monotonic() + 120
        rows: list = []
        while time.monotonic() < deadline and sum(r[1] for r in rows) <= frames - emit_every:
            rows = client.execute("SELECT minute, frames, max_occupancy, occupancy_sum FROM zone_occupancy FINAL "
                                  "WHERE camera_id = %(c)s AND zone = 'yard-centre' AND class_name = 'person'",
                                  {"c": camera})
            time.sleep(0.5)
    finally:
        processes.stop_all()
    assert frames - emit_every < sum(r[1] for r in rows) <= frames
    # A short minute at the wall-clock boundary may have had nobody in the zone; the whole run did.
    assert any(r[2] > 0 for r in rows), rows
    assert all(r[2] * r[1] >= r[3] for r in rows), rows


def test_an_undecodable_detections_record_is_set_aside_by_the_counting_app_and_the_sink_and_counting_goes_on(
        pipeline_settings, tmp_path):
    import urllib.request

    from confluent_kafka import Producer

    from foundation.kafka import producer_config
    from schemas import DETECTIONS
    from tests.pipeline import consume_records

    settings = pipeline_settings(partitions=2)
    camera = f"cam-poison-{tmp_path.name[-6:]}"
    processes = CamcountProcesses(settings, tmp_path)
    try:
        processes.start("infer", "infer")
        counting = processes.start("count", "count")
        producer = Producer(producer_config(settings))
        producer.produce(settings.kafka.detections_topic, key=camera.encode(), value=b"\x07not avro",
                         headers=DETECTIONS.headers())
        assert producer.flush(10) == 0
        dead = consume_records(settings, settings.kafka.records_dead_letter_topic, lambda rs: len(rs) >= 2,
                               timeout_s=120, decode=lambda raw, _: {"value": raw})
        result = processes.run("ingest", "--camera-id", camera, "--source", str(footage_path()), "--fps", "0",
                               "--first-seq", "0", "--max-frames", "10")
        assert result.returncode == 0, result.stderr
        _wait_counted(settings, [camera], 9, timeout_s=120)
        assert counting.poll() is None, "the counting app must keep running"
        with urllib.request.urlopen(f"http://127.0.0.1:{settings.counting.web_port}/metrics", timeout=5) as response:
            body = response.read().decode()
    finally:
        processes.stop_all()
    assert sorted(d["_headers"]["dlq-stage"] for d in dead) == [b"count", b"sink"]
    assert {(d["value"], d["_headers"]["dlq-error-code"], d["_headers"]["dlq-error-detail"]) for d in dead} == {
        (b"\x07not avro", b"INF_001", b"undecodable-record")}
    assert 'camcount_count_dead_records_total{code="INF_001",detail="undecodable-record"} 1.0' in body
    assert ('camcount_sink_dead_records_total{code="INF_001",detail="undecodable-record",'
            f'topic="{settings.kafka.detections_topic}"}} 1.0') in body



def test_a_killed_ingest_s_camera_is_ended_after_its_silence_and_counts_as_offline_over_the_frames_it_sent(
        pipeline_settings, tmp_path):
    import urllib.request

    from schemas import CROSSING, FRAME
    from tests.pipeline import consume_records

    settings = pipeline_settings(partitions=2)
    settings = settings.model_copy(update={"counting": settings.counting.model_copy(update={"silent_camera_end_s": 3})})
    camera = f"cam-killed-{tmp_path.name[-6:]}"
    processes = CamcountProcesses(settings, tmp_path)
    try:
        processes.start("infer", "infer")
        processes.start("count", "count")
        ingest = processes.start("ingest", "ingest", "--camera-id", camera, "--source", str(footage_path()),
                                 "--fps", "10", "--first-seq", "0")
        _wait_counted(settings, [camera], 60, timeout_s=180)
        ingest.send_signal(signal.SIGKILL)  # no end-of-stream marker
        ingest.wait(10)
        frames = consume_records(settings, settings.kafka.frames_topic,
                                 lambda rs: any(r["camera_id"] == camera and r["end_of_stream"] for r in rs),
                                 timeout_s=120, decode=lambda raw, headers: FRAME.decode(raw, headers))
        sent = [r["frame_seq"] for r in frames if r["camera_id"] == camera and not r["end_of_stream"]]
        ends = consume_records(settings, settings.kafka.detections_topic,
                               lambda rs: any(r["camera_id"] == camera and r["status"] == "END" for r in rs),
                               timeout_s=60)
        expected = _offline_crossings(settings, camera, frames=max(sent) + 1)
        crossings = consume_records(
            settings, settings.kafka.crossings_topic,
            lambda rs: Counter((r["line"], r["direction"], r["class_name"]) for r in rs
                               if r["camera_id"] == camera) == expected,
            timeout_s=60, decode=lambda raw, headers: CROSSING.decode(raw, headers))
        time.sleep(3 * 3)  # longer silence: no second marker for the same frame
        live = read_camera(redis.Redis.from_url(settings.redis_url()), settings.redis.key_prefix, camera)
        with urllib.request.urlopen(f"http://127.0.0.1:{settings.counting.web_port}/metrics", timeout=5) as response:
            body = response.read().decode()
    finally:
        processes.stop_all()
    assert sent == list(range(len(sent)))
    assert [(r["frame_seq"], r["end_of_stream"], r["_headers"].get("camcount-end")) for r in frames
            if r["camera_id"] == camera and r["end_of_stream"]] == [(max(sent), True, b"silence")]
    assert [(r["frame_seq"], r["_headers"].get("camcount-end")) for r in ends
            if r["camera_id"] == camera and r["status"] == "END"] == [(max(sent), b"silence")]
    assert Counter((r["line"], r["direction"], r["class_name"]) for r in crossings if r["camera_id"] == camera) == (
        expected)
    assert f'camcount_count_silence_ends_total{{camera="{camera}"}} 1.0' in body
    assert f'camcount_count_stream_ended{{camera="{camera}"}} 0.0' in body
    assert (live["last_frame_seq"], live["silence_ended"], live["stream_ended"]) == (max(sent), 1, 0)
