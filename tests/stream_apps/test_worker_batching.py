"""The worker's batching policy on the real broker: an idle worker runs a frame as soon as it is decoded instead
of waiting to fill a batch, a backlog fills batches to max_batch, and every detections record carries a timing
header whose stages are in order."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from confluent_kafka import Producer

from foundation.kafka import producer_config
from foundation.settings import Settings
from models.detections import Detections
from schemas import FRAME
from stream_apps.inference.metrics import TIMING_HEADER, TIMING_STAGES, parse_timing, timing_header
from stream_apps.inference.routing import RouteTable
from stream_apps.inference.worker import InferenceWorker
from tests.pipeline import consume_records

pytestmark = [pytest.mark.integration]

JPEG = cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))[1].tobytes()


class SlowDetector:
    """Stands in for a model that takes ``seconds`` per run, whatever the batch size."""

    name, version = "slow", "1.0.0"
    manifest = SimpleNamespace(class_names=["person"], box_calibration=None)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.last_timings = SimpleNamespace(preprocess_ms=0.0, infer_ms=seconds * 1000, postprocess_ms=0.0)

    def detect(self, images, conf=None, iou=None):
        time.sleep(self.seconds)
        return [Detections.empty() for _ in images]


def _settings(isolated_settings, **inference) -> Settings:
    settings = isolated_settings(1)
    return settings.model_copy(update={
        "inference": settings.inference.model_copy(update={"metrics_port": 0, **inference})})


def _publish(producer: Producer, settings: Settings, seqs: range) -> None:
    for seq in seqs:
        value = FRAME.encode({"camera_id": "cam", "frame_seq": seq, "capture_ts_ms": int(time.time() * 1000),
                              "width": 64, "height": 48, "image": JPEG})
        producer.produce(settings.kafka.frames_topic, key=b"cam", value=value, headers=FRAME.headers())
    assert producer.flush(10) == 0


@contextmanager
def _running(settings: Settings, detector: SlowDetector) -> Iterator[InferenceWorker]:
    worker = InferenceWorker(settings, RouteTable(detector))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(30)


def _timings(records: list[dict]) -> list[dict[str, float]]:
    return [parse_timing(r["_headers"].get(TIMING_HEADER)) for r in records]


def test_an_idle_worker_runs_each_frame_at_once_instead_of_waiting_to_fill_a_batch(isolated_settings):
    # max_delay_ms is long and max_batch large: a worker that waited to fill batches would hold each frame
    # for about 2 s and put frames arriving within that time into one batch.
    settings = _settings(isolated_settings, max_batch=8, max_delay_ms=2000)
    producer = Producer(producer_config(settings))
    with _running(settings, SlowDetector(0.01)) as worker:
        assert worker.ready.wait(30)
        time.sleep(0.5)  # idle, blocked in its poll
        for seq in range(3):
            _publish(producer, settings, range(seq, seq + 1))
            time.sleep(1.0)
        records = consume_records(settings, settings.kafka.detections_topic, lambda rs: len(rs) >= 3, timeout_s=60)
    assert [r["frame_seq"] for r in records] == [0, 1, 2]
    for record, times in zip(records, _timings(records)):
        assert times["batch"] == 1, (record["frame_seq"], times)
        assert times["infer_start"] - times["fetched"] < 1000, (record["frame_seq"], times)
    sizes = worker.metrics.registry
    assert sizes.get_sample_value("camcount_inference_batch_size_count", {"model": "slow", "version": "1.0.0"}) == 3
    assert sizes.get_sample_value("camcount_inference_batch_size_sum", {"model": "slow", "version": "1.0.0"}) == 3


def test_a_backlog_fills_batches_to_max_batch(isolated_settings):
    settings = _settings(isolated_settings, max_batch=8)
    _publish(Producer(producer_config(settings)), settings, range(40))
    with _running(settings, SlowDetector(0.02)) as worker:
        records = consume_records(settings, settings.kafka.detections_topic, lambda rs: len(rs) >= 40, timeout_s=60)
    assert sorted(r["frame_seq"] for r in records) == list(range(40))
    sizes = [t["batch"] for t in _timings(records)]
    assert max(sizes) == 8, sizes
    runs = worker.metrics.registry.get_sample_value("camcount_inference_batches_total",
                                                    {"model": "slow", "version": "1.0.0"})
    assert runs <= 10, f"{runs} model runs for 40 frames with max_batch 8"


def test_every_detections_record_has_its_timing_header_with_stages_in_order(isolated_settings):
    settings = _settings(isolated_settings, max_batch=4)
    _publish(Producer(producer_config(settings)), settings, range(10))
    with _running(settings, SlowDetector(0.005)) as worker:
        records = consume_records(settings, settings.kafka.detections_topic, lambda rs: len(rs) >= 10, timeout_s=60)
    assert len(records) == 10
    for record, times in zip(records, _timings(records)):
        stages = [times[stage] for stage in TIMING_STAGES]
        assert stages == sorted(stages), times
        assert record["capture_ts_ms"] <= times["fetched"] + 1, times  # capture is whole ms, fetched is not
        assert times["produced"] <= time.time() * 1000
        assert 1 <= times["batch"] <= 4
    labels = {"model": "slow", "version": "1.0.0"}
    for stage in ("fetch", "decode", "queue"):
        assert worker.metrics.registry.get_sample_value(f"camcount_inference_{stage}_seconds_count", labels) == 10


def test_timing_header_round_trips_and_ignores_what_it_cannot_read():
    name, value = timing_header({"fetched": 1732000000123.4567, "decoded": 1732000000125.0, "batch": 3})
    assert name == TIMING_HEADER
    assert value == b"fetched=1732000000123.457,decoded=1732000000125.000,batch=3"
    assert parse_timing(value) == {"fetched": 1732000000123.457, "decoded": 1732000000125.0, "batch": 3.0}
    assert parse_timing(b"fetched=1.5,garbage,decoded=x,=2") == {"fetched": 1.5}
    assert parse_timing(None) == {}
