"""The inference consumer group on the real broker: scale-out, crash safety, poison messages, ordering."""

from __future__ import annotations

import re
import signal
import time
from collections import Counter, defaultdict

import cv2
import numpy as np
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from foundation.kafka import consumer_config, producer_config
from schemas import FRAME, SCHEMA_VERSION_HEADER
from stream_apps.inference.commits import MAX_PENDING_BATCHES
from tests.pipeline import CamcountProcesses, consume_records, footage_path, frame_records

pytestmark = [pytest.mark.slow, pytest.mark.integration]

CAMERAS = 6
FRAMES_PER_CAMERA = 30


def _frames_seen(records: list[dict]) -> set[tuple[str, int]]:
    return {(r["camera_id"], r["frame_seq"]) for r in frame_records(records)}


def _ingest_cameras(processes: CamcountProcesses, prefix: str, fps: str = "0") -> list[str]:
    cameras = [f"{prefix}-{i}" for i in range(CAMERAS)]
    for camera in cameras:
        processes.start(f"ingest-{camera}", "ingest", "--camera-id", camera, "--source", str(footage_path()),
                        "--fps", fps, "--first-seq", "0", "--max-frames", str(FRAMES_PER_CAMERA))
    return cameras


def _worker_frames(log: str) -> int:
    match = re.search(r"inference worker stopped: (\d+) frames", log)
    assert match, f"worker did not report its frames:\n{log[-2000:]}"
    return int(match.group(1))


@pytest.fixture(scope="module")
def two_worker_run(tmp_path_factory, request):
    """Two workers in one group serve 6 cameras x 30 frames; yields (records, worker frame counts, cameras)."""
    pipeline_settings = request.getfixturevalue("pipeline_settings")
    settings = pipeline_settings(partitions=4, max_batch=4)
    workdir = tmp_path_factory.mktemp("two-workers")
    processes = CamcountProcesses(settings, workdir)
    total = CAMERAS * FRAMES_PER_CAMERA
    try:
        processes.start("infer-1", "infer")
        processes.start("infer-2", "infer")
        time.sleep(3)  # both join before the frames arrive, so the partitions are split from the start
        cameras = _ingest_cameras(processes, f"split-{workdir.name[-4:]}")
        records = consume_records(settings, settings.kafka.detections_topic,
                                  lambda rs: len(_frames_seen(rs)) >= total, timeout_s=180)
        time.sleep(1)  # let a duplicate, if any, arrive too
        records = consume_records(settings, settings.kafka.detections_topic, lambda rs: len(rs) >= len(records),
                                  timeout_s=30)
    finally:
        processes.stop_all()
    worker_frames = [_worker_frames(processes.log("infer-1")), _worker_frames(processes.log("infer-2"))]
    yield frame_records(records), worker_frames, cameras


def test_two_workers_produce_exactly_one_detections_record_per_frame(two_worker_run):
    records, _, cameras = two_worker_run
    per_frame = Counter((r["camera_id"], r["frame_seq"]) for r in records)
    assert set(per_frame) == {(c, s) for c in cameras for s in range(FRAMES_PER_CAMERA)}
    assert set(per_frame.values()) == {1}


def test_two_workers_both_take_a_share_of_the_partitions(two_worker_run):
    records, worker_frames, _ = two_worker_run
    assert all(n > 0 for n in worker_frames), worker_frames
    assert sum(worker_frames) == len(records)


def test_each_camera_keeps_its_frame_order_under_batching(two_worker_run):
    records, _, _ = two_worker_run
    by_camera: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for r in records:
        by_camera[r["camera_id"]].append((r["_partition"], r["_offset"], r["frame_seq"]))
    for camera, rows in by_camera.items():
        assert len({p for p, _, _ in rows}) == 1, f"{camera} spread over partitions"
        in_offset_order = [seq for _, _, seq in sorted(rows)]
        assert in_offset_order == sorted(in_offset_order), camera


def test_a_killed_worker_loses_no_frame_and_duplicates_only_its_uncommitted_tail(pipeline_settings, tmp_path):
    max_batch = 4
    settings = pipeline_settings(partitions=4, max_batch=max_batch)
    processes = CamcountProcesses(settings, tmp_path)
    total = CAMERAS * FRAMES_PER_CAMERA
    try:
        victim = processes.start("victim", "infer")
        time.sleep(3)
        cameras = _ingest_cameras(processes, f"kill-{tmp_path.name[-4:]}", fps="5")
        consume_records(settings, settings.kafka.detections_topic, lambda rs: len(rs) >= total // 4, timeout_s=120)
        processes.start("survivor", "infer")
        time.sleep(1)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        records = consume_records(settings, settings.kafka.detections_topic,
                                  lambda rs: len(_frames_seen(rs)) >= total, timeout_s=180)
    finally:
        processes.stop_all()
    assert _worker_frames(processes.log("survivor")) > 0, "the victim must die mid-stream for this test to mean a thing"
    per_frame = Counter((r["camera_id"], r["frame_seq"]) for r in frame_records(records))
    assert set(per_frame) == {(c, s) for c in cameras for s in range(FRAMES_PER_CAMERA)}
    duplicates = sum(n - 1 for n in per_frame.values())
    # Only the uncommitted tail may be redone: batches whose acknowledgements or commit were still pending
    # (at most MAX_PENDING_BATCHES) plus the one being produced when the victim died.
    assert duplicates <= (MAX_PENDING_BATCHES + 1) * max_batch, per_frame.most_common(8)


def _tiny_jpeg(width: int = 64, height: int = 48) -> bytes:
    ok, jpeg = cv2.imencode(".jpg", np.full((height, width, 3), 128, np.uint8))
    assert ok
    return jpeg.tobytes()


def _frame_value(camera: str, seq: int, image: bytes, width: int = 64, height: int = 48, variant: str = "") -> bytes:
    return FRAME.encode({"camera_id": camera, "frame_seq": seq, "capture_ts_ms": int(time.time() * 1000),
                         "width": width, "height": height, "image": image, "variant": variant})


def test_poison_messages_go_to_the_dead_letter_topic_with_their_codes_while_good_frames_flow(
    pipeline_settings, tmp_path
):
    settings = pipeline_settings(partitions=2, max_frame_bytes=200_000, max_frame_pixels=4_000_000)
    camera = f"poison-{tmp_path.name[-4:]}"
    good = _tiny_jpeg()
    poison = {  # (code, detail) -> poison
        ("INF_001", "undecodable-record"): (b"\x00\xff not avro at all", FRAME.headers()),
        ("INF_001", "unknown-schema-version"): (
            _frame_value(camera, 1, good), [("camcount-schema", b"frame"), (SCHEMA_VERSION_HEADER, b"99")]),
        ("INF_002", "corrupt-image"): (_frame_value(camera, 2, b"\xff\xd8 truncated jpeg"), FRAME.headers()),
        ("INF_001", "oversized-payload"): (_frame_value(camera, 3, b"\xff" * 300_000), FRAME.headers()),
        ("INF_001", "too-many-pixels"): (_frame_value(camera, 4, good, width=50_000, height=50_000), FRAME.headers()),
        ("INF_001", "unknown-variant"): (_frame_value(camera, 5, good, variant="nobody-serves-this"), FRAME.headers()),
    }
    producer = Producer(producer_config(settings))
    topic = settings.kafka.frames_topic
    good_seqs = []
    seq = 10
    for (code, detail), (value, headers) in poison.items():
        producer.produce(topic, key=camera.encode(), value=value,
                         headers=headers + [("expected", f"{code} {detail}".encode())])
        producer.produce(topic, key=camera.encode(), value=_frame_value(camera, seq, good), headers=FRAME.headers())
        good_seqs.append(seq)
        seq += 1
    assert producer.flush(10) == 0
    processes = CamcountProcesses(settings, tmp_path)
    try:
        processes.start("infer", "infer")
        dead = consume_records(settings, settings.kafka.dead_letter_topic, lambda rs: len(rs) >= len(poison),
                               timeout_s=120, decode=lambda value, headers: {"value": value})
        detections = consume_records(settings, settings.kafka.detections_topic,
                                     lambda rs: len(rs) >= len(good_seqs), timeout_s=60)
    finally:
        processes.stop_all()
    classified = [(d["_headers"]["dlq-error-code"].decode(), d["_headers"]["dlq-error-detail"].decode()) for d in dead]
    assert sorted(classified) == sorted(poison)
    for d, (code, detail) in zip(dead, classified):
        assert d["_headers"]["expected"].decode() == f"{code} {detail}"
        assert d["value"] == poison[(code, detail)][0], f"{code} {detail}: the original payload must be kept"
        assert d["_headers"]["dlq-reason"], code
    assert sorted(r["frame_seq"] for r in detections) == good_seqs


def test_transactional_worker_commits_offsets_inside_its_transactions(pipeline_settings, tmp_path):
    settings = pipeline_settings(partitions=2, transactional=True)
    processes = CamcountProcesses(settings, tmp_path)
    camera = f"txn-{tmp_path.name[-4:]}"
    try:
        processes.start("infer", "infer")
        result = processes.run("ingest", "--camera-id", camera, "--source", str(footage_path()), "--fps", "0",
                               "--first-seq", "0", "--max-frames", "24")
        assert result.returncode == 0, result.stderr
        records = consume_records(settings, settings.kafka.detections_topic,
                                  lambda rs: any(r["status"] == "END" for r in rs), timeout_s=120)
    finally:
        processes.stop_all()
    assert sorted(r["frame_seq"] for r in frame_records(records)) == list(range(24))
    consumer = Consumer(consumer_config(settings, settings.inference.group_id))
    try:
        committed = consumer.committed([TopicPartition(settings.kafka.frames_topic, p) for p in range(2)], 10)
    finally:
        consumer.close()
    assert sum(max(tp.offset, 0) for tp in committed) == 24 + 1, committed  # every frame and the end marker
