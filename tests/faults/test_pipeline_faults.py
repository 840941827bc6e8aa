"""Whole-pipeline fault injection: real processes on a private stack, one fault per test, and each test asserts that
the final ClickHouse totals EQUAL the offline count of the same footage (see tests/faults/harness.py).

The tests share one pipeline (started once, restarted piecemeal by the tests that kill a part of it) and one
private stack; each streams its own camera, so a test only ever looks at its own rows. They run in the order
below; each first puts the processes it needs in place, so any one of them also runs alone.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest
from confluent_kafka import Producer

from foundation.clickhouse import clickhouse_client
from foundation.kafka import producer_config
from models.registry import ModelRegistry
from producers.sources import FrameSource
from schemas import CROSSING, DETECTIONS, FRAME, SHADOW_PAIR, WINDOW_COUNT, ZONE_OCCUPANCY
from tests.faults.harness import (
    CLIP_FRAMES,
    KILL_AT_FRAME,
    SETTLE_S,
    FaultPipeline,
    Totals,
    fault_settings,
    full_disk_wrapper,
    longest_capture_gap_ms,
    offline_totals,
    pid_of,
    publish_detections,
    read_keyed,
    redis_line_totals,
    write_clip,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PAUSE_S = 10.0
"""How long ClickHouse or Redis stays paused (SIGSTOP) mid-stream: longer than the whole clip takes to publish."""
CLICKHOUSE_DOWN_S = 4.0
"""How long ClickHouse stays killed before it is started again."""
COUNT_RESTARTS = 4
"""Start-ups of the counting app over a waiting backlog in the restart test."""
REDIS_TEST_FPS = 12.0
"""Slower than the other tests' streams, so that ingest re-reads the active experiment (every 5 s) while Redis is
paused."""


@pytest.fixture(scope="module")
def faults(outage_stack, model_registry: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultPipeline]:
    stack, base = outage_stack
    clip = write_clip(tmp_path_factory.mktemp("clip") / "vtest-95-194.avi")
    registry = tmp_path_factory.mktemp("faults-registry") / "models"
    shutil.copytree(model_registry, registry)  # a copy of its own: no one else's promotion reaches the workers
    settings = fault_settings(base, tmp_path_factory.mktemp("faults-home"), str(registry))
    pipeline = FaultPipeline(stack, settings, tmp_path_factory.mktemp("faults-logs"), clip)
    pipeline.use_topology(standalone_sink=False)
    try:
        yield pipeline
    finally:
        pipeline.close()


@pytest.fixture(scope="module")
def offline(faults: FaultPipeline) -> Totals:
    """The offline count of the clip (computed while the pipeline's processes start)."""
    expected = offline_totals(faults.settings, faults.clip, "any-camera-on-the-defaults")
    assert {direction for _, direction, _ in expected} == {"in", "out"}, (
        f"the clip must hold crossings both ways for these tests to mean anything: {dict(expected)}")
    return expected


def _camera(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


def _assert_equal_offline(faults: FaultPipeline, camera: str, offline: Totals, timeout_s: float = 90):
    faults.wait_ingested(camera)
    outcome = faults.settle(camera, offline, timeout_s=timeout_s)
    assert outcome.events == offline, faults.explain(outcome, offline)
    assert outcome.rollup == offline, faults.explain(outcome, offline)
    assert outcome.every_frame_inferred_once(), faults.explain(outcome, offline)
    return outcome


def _paused(pid: int, seconds: float) -> None:
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        os.kill(pid, signal.SIGCONT)


# --- processes killed ---------------------------------------------------------------------------------------------
def test_an_inference_worker_killed_mid_stream_and_restarted_loses_and_doubles_nothing(faults, offline):
    faults.use_topology(standalone_sink=False)
    camera = _camera("kill-infer")
    faults.stream(camera)
    faults.wait_counted(camera, KILL_AT_FRAME)
    faults.kill("infer")
    faults.start("infer", "infer")
    _assert_equal_offline(faults, camera, offline)
    assert faults.dead() == {}, faults.all_logs()


def test_the_counting_app_killed_mid_stream_and_restarted_loses_and_doubles_nothing(faults, offline):
    faults.use_topology(standalone_sink=False)
    camera = _camera("kill-count")
    faults.stream(camera)
    faults.wait_counted(camera, KILL_AT_FRAME)
    faults.kill("count")
    faults.start("count", "count")
    _assert_equal_offline(faults, camera, offline)
    assert faults.dead() == {}, faults.all_logs()


def test_the_counting_app_restarted_over_a_backlog_takes_every_detections_record(faults):
    """A restarted counting app must take every detections record that waited for it (replays may come twice).

    Found by this suite: before stream_apps/faust_kafka.py closed Faust's start-up window, about one start-up in four
    skipped a run of consecutive records (1 to 35 seen) of a camera that were waiting in the detections topic (its
    tracks broke and its crossings in those frames were lost). Each restart here gets a fresh camera, often on a
    partition the group has never committed, whose records are published while the app starts."""
    faults.use_topology(standalone_sink=False)
    lost: dict[str, float] = {}
    for restart in range(COUNT_RESTARTS):
        faults.stop("count")
        faults.start("count", "count")
        camera = _camera(f"restart-{restart}")
        publish_detections(faults.settings, camera, CLIP_FRAMES, pace_s=0.05)
        faults.wait_counted(camera, CLIP_FRAMES - 1)  # its last record is counted ...
        time.sleep(SETTLE_S)
        taken = faults.counting_metrics(camera)  # ... and so is every other one (replays aside), or it never will be
        counted = taken.get("camcount_count_frames_total", 0) - taken.get("camcount_count_late_frames_total", 0)
        if counted != CLIP_FRAMES:
            lost[camera] = CLIP_FRAMES - counted
    assert lost == {}, (f"frames a restarted counting app never counted, per camera: {lost} "
                        f"(of {CLIP_FRAMES} each, in {COUNT_RESTARTS} restarts)\n" + faults.log("count"))


# --- ClickHouse and Redis away -------------------------------------------------------------------------------------
def _log_lines(faults: FaultPipeline, role: str, *words: str) -> int:
    """How many lines of ``role``'s running process's log hold all of ``words`` (did the fault reach it?)."""
    return sum(all(word in line for word in words) for line in faults.current_log(role).splitlines())


def _failed_inserts(faults: FaultPipeline) -> int:
    """ClickHouse inserts the sink inside the running ``count`` has seen fail so far (one log line each)."""
    return _log_lines(faults, "count", "ClickHouse insert of", "failed")


def test_clickhouse_paused_mid_stream_stops_no_process_and_loses_nothing(faults, offline):
    faults.use_topology(standalone_sink=False)
    camera = _camera("ch-paused")
    faults.stream(camera)
    faults.wait_counted(camera)
    failed_before = _failed_inserts(faults)
    _paused(pid_of(faults.stack, "clickhouse"), PAUSE_S)
    assert _failed_inserts(faults) > failed_before, "the sink never met the paused ClickHouse: the fault did not bite"
    _assert_equal_offline(faults, camera, offline)
    assert faults.dead() == {}, faults.all_logs()


def test_clickhouse_killed_mid_stream_and_restarted_stops_no_process_and_loses_nothing(faults, offline):
    faults.use_topology(standalone_sink=False)
    camera = _camera("ch-killed")
    faults.stream(camera)
    faults.wait_counted(camera)
    failed_before = _failed_inserts(faults)
    os.kill(pid_of(faults.stack, "clickhouse"), signal.SIGKILL)
    time.sleep(CLICKHOUSE_DOWN_S)
    assert faults.dead() == {}, faults.all_logs()
    assert _failed_inserts(faults) > failed_before, "the sink never met the stopped ClickHouse: the fault did not bite"
    faults.stack.up()  # starts ClickHouse again, on the same data
    _assert_equal_offline(faults, camera, offline)
    assert faults.dead() == {}, faults.all_logs()


def test_redis_paused_mid_stream_stops_no_process_loses_nothing_and_live_totals_catch_up(faults, offline):
    faults.use_topology(standalone_sink=False)
    camera = _camera("redis-paused")
    faults.stream(camera, fps=REDIS_TEST_FPS)
    faults.wait_counted(camera)
    missed_before = _log_lines(faults, "count", "Redis", "not updated")
    redis_pid = pid_of(faults.stack, "redis")
    os.kill(redis_pid, signal.SIGSTOP)
    try:  # Redis stays away until ClickHouse holds everything (its rows must not wait for Redis), and until the
        faults.wait_ingested(camera)  # counting app has counted the whole clip, so no new record comes after it
        outcome = faults.settle(camera, offline)
        faults.wait_frames_counted(camera, CLIP_FRAMES)
        time.sleep(2 * SETTLE_S)  # the sink takes the counting app's last records (zones, windows) meanwhile
        assert faults.dead() == {}, faults.all_logs()
    finally:
        os.kill(redis_pid, signal.SIGCONT)
    assert _log_lines(faults, "count", "Redis", "not updated") > missed_before, "the fault did not bite"
    assert outcome.events == offline, faults.explain(outcome, offline)
    assert outcome.rollup == offline, faults.explain(outcome, offline)
    assert outcome.every_frame_inferred_once(), faults.explain(outcome, offline)
    # ingest's experiment lookups must not hold up its publish path (a live camera would drop the frames meanwhile)
    assert longest_capture_gap_ms(faults.settings, camera) < 1500, faults.log(f"ingest-{camera}")
    # Nothing new reaches the sink now (the clip is over): the crossings it held back must still reach Redis.
    deadline = time.monotonic() + 15
    while redis_line_totals(faults.settings, camera) != outcome.events and time.monotonic() < deadline:
        time.sleep(0.25)
    assert redis_line_totals(faults.settings, camera) == outcome.events, (
        "Redis live totals never caught up with ClickHouse after Redis returned:\n" + faults.log("count"))
    assert faults.dead() == {}, faults.all_logs()


# --- bad records -----------------------------------------------------------------------------------------------------
def RECORD_CODECS(kafka) -> list[tuple[str, object]]:  # noqa: N802 - a table
    """Every topic a record stage reads (the counting app, the sink), with its codec."""
    return [(kafka.detections_topic, DETECTIONS), (kafka.crossings_topic, CROSSING),
            (kafka.window_counts_topic, WINDOW_COUNT), (kafka.zone_occupancy_topic, ZONE_OCCUPANCY),
            (kafka.shadow_topic, SHADOW_PAIR)]


def _jpeg_of_a_clip_frame(faults: FaultPipeline) -> bytes:
    image = next(iter(FrameSource(str(faults.clip)).frames())).image
    return cv2.imencode(".jpg", image)[1].tobytes()


def test_poison_records_on_every_topic_are_dead_lettered_with_codes_and_the_good_frames_count_as_offline(
        faults, offline):
    faults.use_topology(standalone_sink=False)
    settings = faults.settings
    kafka = settings.kafka
    camera = _camera("poison")
    key = camera.encode()
    faults.stream(camera)
    faults.wait_counted(camera)
    jpeg = _jpeg_of_a_clip_frame(faults)

    def frame(seq: int, image: bytes) -> bytes:  # far past the clip's seqs: counted by mistake, it would end the
        return FRAME.encode({"camera_id": camera, "frame_seq": seq, "capture_ts_ms": int(time.time() * 1000),
                             "width": 768, "height": 576, "image": image})  # camera's count (later frames "late")

    poison = [
        (kafka.frames_topic, random.Random(0).randbytes(64), FRAME.headers()),  # random bytes (seeded: undecodable)
        (kafka.frames_topic, frame(10_000, jpeg[: len(jpeg) // 2]), FRAME.headers()),  # truncated JPEG
        # garbage JPEG: no 0xff byte after the start, so no frame header; random bytes could hold one that declares
        # a huge size, which is refused as too-many-pixels instead (seen once in CI)
        (kafka.frames_topic, frame(10_001, b"\xff\xd8\xff" + bytes(range(200))), FRAME.headers()),
        (kafka.frames_topic, None, FRAME.headers()),  # tombstone
        *((topic, value, codec.headers()) for topic, codec in RECORD_CODECS(kafka)  # every topic after frames:
          for value in (b"\x07not avro", None)),  # undecodable bytes, and a tombstone
    ]
    producer = Producer(producer_config(settings))
    for topic, value, headers in poison:
        producer.produce(topic, key=key, value=value, headers=headers)
    assert producer.flush(10) == 0

    _assert_equal_offline(faults, camera, offline)
    assert faults.dead() == {}, faults.all_logs()

    frames_dlq = read_keyed(settings, kafka.dead_letter_topic, key, 4)
    records_dlq = read_keyed(settings, kafka.records_dead_letter_topic, key, 12)
    assert sorted((r["headers"]["dlq-stage"], r["headers"]["dlq-error-code"], r["headers"]["dlq-error-detail"])
                  for r in frames_dlq) == [(b"infer", b"INF_001", b"undecodable-record")] * 2 + [
        (b"infer", b"INF_002", b"corrupt-image")] * 2, frames_dlq
    expected = [(kafka.detections_topic, "count")] + [(topic, "sink") for topic, _ in RECORD_CODECS(kafka)]
    assert sorted((r["headers"]["dlq-source"].decode().rsplit("/", 2)[0], r["headers"]["dlq-stage"].decode(),
                   r["headers"]["dlq-error-code"].decode(), r["headers"]["dlq-error-detail"].decode(), repr(r["value"]))
                  for r in records_dlq) == sorted(
        (topic, stage, "INF_001", "undecodable-record", value) for topic, stage in expected
        for value in (repr(b"\x07not avro"), repr(None))), records_dlq


# --- resources -------------------------------------------------------------------------------------------------------
def test_a_full_model_cache_disk_leaves_the_worker_serving_and_the_counts_equal_offline(faults, offline,
                                                                                        tmp_path: Path):
    faults.use_topology(standalone_sink=False)
    home = tmp_path / "home"
    worker_settings = faults.settings.model_copy(update={"home": home})
    cache = worker_settings.layout().runtime_cache
    prefix, preexec_fn, how = full_disk_wrapper(cache)
    faults.stop("infer")
    faults.start("infer", "infer", prefix=prefix, preexec_fn=preexec_fn, settings=worker_settings)
    camera = _camera("full-disk")
    faults.stream(camera)
    _assert_equal_offline(faults, camera, offline)
    assert faults.dead() == {}, faults.all_logs()
    log = faults.current_log("infer")
    not_cached = [line for line in log.splitlines() if "cannot store the optimised graph of" in line]
    models = [line.split("cannot store the optimised graph of ", 1)[1].split()[0] for line in not_cached]
    assert not_cached and len(models) == len(set(models)), f"one line per model not cached ({how}):\n{log}"
    assert all("RES_004" in line for line in not_cached), f"a full cache disk is logged with RES_004 ({how}):\n{log}"
    if how == "tmpfs":  # a real full disk (under the file-size limit the disk itself has room)
        assert all("the disk is full" in line for line in not_cached), f"the log names the full disk:\n{log}"


# --- a model that breaks in production -------------------------------------------------------------------------------
def test_a_corrupt_version_promoted_mid_stream_is_served_around_by_the_fallback_and_the_counts_equal_offline(
        faults, offline):
    """The production alias moves to a version whose weights are corrupt while a camera streams: the worker refuses
    it (MODEL_002), the fallback chain (the previous version) serves every frame meanwhile, and the totals equal the
    offline count of the clip; a rollback then clears the fallback."""
    faults.use_topology(standalone_sink=False)
    registry = ModelRegistry(Path(faults.settings.model.registry))
    current = registry.resolve(faults.settings.model.reference)
    name = current.manifest.name
    fields = current.manifest.model_dump(exclude={"version", "sha256", "created_at"})
    broken = registry.register(current.path, **{**fields, "version": "99.0.0"})
    registry.resolve(f"{name}@99.0.0").path.write_bytes(b"not an onnx model")  # after registering: a bad checksum
    swapping = faults.settings.model_copy(
        update={"inference": faults.settings.inference.model_copy(update={"model_poll_s": 0.3})})
    faults.stop("infer")
    faults.start("infer", "infer", settings=swapping)
    camera = _camera("corrupt-model")
    try:
        faults.stream(camera)
        faults.wait_counted(camera)
        registry.promote(name, broken.version)
        _assert_equal_offline(faults, camera, offline)
    finally:
        registry.rollback(name)
    client = clickhouse_client(faults.settings)
    try:
        served = dict(client.execute(
            "SELECT fallback, count() FROM inference_log FINAL WHERE camera_id = %(camera)s GROUP BY fallback",
            {"camera": camera}))
        versions = {v for (v,) in client.execute(
            "SELECT DISTINCT model_version FROM inference_log FINAL WHERE camera_id = %(camera)s", {"camera": camera})}
    finally:
        client.disconnect()
    log = faults.current_log("infer")
    assert served.get(1, 0) > 0, f"no frame was served by the fallback: {served}\n{log[-3000:]}"
    assert versions == {current.manifest.version}, versions
    assert "MODEL_002" in log, log[-3000:]
    assert faults.dead() == {}, faults.all_logs()


# --- the standalone sink ---------------------------------------------------------------------------------------------
def test_a_standalone_sink_killed_mid_stream_and_restarted_loses_and_doubles_nothing(faults, offline):
    faults.use_topology(standalone_sink=True)  # `count --no-sink` beside `camcount sink`
    camera = _camera("kill-sink")
    faults.stream(camera)
    faults.wait_counted(camera, KILL_AT_FRAME)
    faults.kill("sink")
    faults.start("sink", "sink")
    _assert_equal_offline(faults, camera, offline)
    assert faults.dead() == {}, faults.all_logs()
