"""A model that fails on a batch does not take the worker down: its frames are recorded as ERROR, not lost."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from confluent_kafka import Producer

from camcount.kafka_config import producer_config
from schemas import FRAME
from stream_apps.inference.routing import RouteTable
from stream_apps.inference.worker import InferenceWorker
from tests.pipeline import consume_records

pytestmark = [pytest.mark.integration]


class ExplodingDetector:
    """Stands in for a model whose runtime raises on its input (e.g. a broken candidate export)."""

    name, version = "exploding", "0.0.1"
    manifest = SimpleNamespace(class_names=["person"])
    last_timings = SimpleNamespace(preprocess_ms=0.0, infer_ms=0.0, postprocess_ms=0.0)

    def detect(self, images, conf=None, iou=None):
        raise RuntimeError("ONNXRuntimeError: kernel failed")


def test_frames_of_a_failing_model_become_error_records_and_the_worker_keeps_going(isolated_settings):
    settings = isolated_settings(1)
    settings = settings.model_copy(update={"inference": settings.inference.model_copy(update={"metrics_port": 0})})
    producer = Producer(producer_config(settings))
    jpeg = cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))[1].tobytes()
    for seq in range(3):
        value = FRAME.encode({"camera_id": "cam", "frame_seq": seq, "capture_ts_ms": int(time.time() * 1000),
                              "width": 64, "height": 48, "image": jpeg})
        producer.produce(settings.kafka.frames_topic, key=b"cam", value=value, headers=FRAME.headers())
    assert producer.flush(10) == 0
    worker = InferenceWorker(settings, RouteTable(ExplodingDetector()))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        records = consume_records(settings, settings.kafka.detections_topic, lambda rs: len(rs) >= 3, timeout_s=60)
        assert thread.is_alive()
    finally:
        worker.stop()
        thread.join(30)
    assert [(r["frame_seq"], r["status"], r["model_version"]) for r in records] == [
        (0, "ERROR", "0.0.1"), (1, "ERROR", "0.0.1"), (2, "ERROR", "0.0.1")]
    failed = worker.metrics.frames.labels("exploding", "0.0.1", "", "failed")._value.get()
    assert failed == 3
