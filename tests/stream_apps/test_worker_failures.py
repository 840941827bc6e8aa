"""Nothing a frame can carry takes the worker down: frames a model fails on are recorded as ERROR, frames that
cannot be decoded or served go to the dead-letter topic with their code and reason, and good frames flow; a
camera's end-of-stream marker, which has no image, passes through as an END record."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from confluent_kafka import Producer

from experiments.config import load_experiment
from foundation.kafka import producer_config
from models.detections import Detections
from models.errors import ModelLoadError
from schemas import FRAME
from stream_apps.inference.routing import RouteTable
from stream_apps.inference.worker import InferenceWorker
from tests.pipeline import consume_records

pytestmark = [pytest.mark.integration]


class ExplodingDetector:
    """Stands in for a model whose runtime raises on its input (e.g. a broken candidate export)."""

    name, version = "exploding", "0.0.1"
    manifest = SimpleNamespace(class_names=["person"], box_calibration=None)
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


class EmptySceneDetector:
    """Stands in for a working model on frames with nobody in them."""

    name, version = "empty", "1.0.0"
    manifest = SimpleNamespace(class_names=["person"], box_calibration=None)
    last_timings = SimpleNamespace(preprocess_ms=0.0, infer_ms=1.0, postprocess_ms=0.0)

    def detect(self, images, conf=None, iou=None):
        return [Detections.empty() for _ in images]


def _jpeg_declaring(width: int, height: int) -> bytes:
    """A real 64x48 JPEG whose frame header (SOF0) is patched to claim ``width`` x ``height``."""
    jpeg = bytearray(cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))[1].tobytes())
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(jpeg)


def _serve(settings, routes: RouteTable, frames: list[dict]) -> tuple[list[dict], list[dict], bool]:
    """Produces ``frames`` (64x48 unless they say otherwise) and runs a worker until each one has come out as a
    detections record or a dead letter; returns (detections, dead letters, whether the worker was still alive)."""
    producer = Producer(producer_config(settings))
    good = cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))[1].tobytes()
    for seq, frame in enumerate(frames):
        value = FRAME.encode({"camera_id": "cam", "frame_seq": seq, "capture_ts_ms": int(time.time() * 1000),
                              "width": 64, "height": 48, "image": good, **frame})
        producer.produce(settings.kafka.frames_topic, key=b"cam", value=value, headers=FRAME.headers())
    assert producer.flush(10) == 0
    worker = InferenceWorker(settings, routes)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        detections = consume_records(settings, settings.kafka.detections_topic,
                                     lambda rs: len(rs) + worker.stats.dead_letters >= len(frames), timeout_s=60)
        dead = consume_records(settings, settings.kafka.dead_letter_topic,
                               lambda rs: len(rs) >= len(frames) - len(detections), timeout_s=30,
                               decode=lambda value, headers: FRAME.decode(value, headers))
        alive = thread.is_alive()
    finally:
        worker.stop()
        thread.join(30)
    return detections, dead, alive


def test_a_jpeg_whose_header_claims_more_pixels_than_opencv_allows_is_dead_lettered_and_the_worker_goes_on(
    isolated_settings
):
    settings = isolated_settings(1)
    settings = settings.model_copy(update={"inference": settings.inference.model_copy(update={"metrics_port": 0})})
    detections, dead, alive = _serve(settings, RouteTable(EmptySceneDetector()),
                                     [{"image": _jpeg_declaring(65000, 65000)}, {}])
    assert alive
    assert [(d["frame_seq"], d["_headers"]["dlq-error-code"], d["_headers"]["dlq-error-detail"]) for d in dead] == [
        (0, b"INF_001", b"too-many-pixels")]
    assert [r["frame_seq"] for r in detections] == [1]


def test_an_end_marker_becomes_an_end_record_after_the_camera_s_last_frame(
    isolated_settings
):
    settings = isolated_settings(1)
    settings = settings.model_copy(update={"inference": settings.inference.model_copy(update={"metrics_port": 0})})
    end = {"frame_seq": 1, "image": b"", "end_of_stream": True}
    detections, dead, alive = _serve(settings, RouteTable(EmptySceneDetector()), [{}, {}, end])
    assert alive and dead == []
    assert [(r["frame_seq"], r["status"]) for r in sorted(detections, key=lambda r: r["_offset"])] == [
        (0, "OK"), (1, "OK"), (1, "END")]


def test_frames_of_a_variant_whose_model_fails_to_load_are_dead_lettered_and_the_worker_goes_on(isolated_settings):
    settings = isolated_settings(1)
    settings = settings.model_copy(update={"inference": settings.inference.model_copy(update={"metrics_port": 0})})
    experiment = load_experiment({"name": "exp", "variants": [{"name": "control", "model": "empty@1.0.0"},
                                                              {"name": "candidate", "model": "broken@1.0.0"}]})

    def load(reference: str):
        if reference == "broken@1.0.0":
            raise ModelLoadError(f"{reference}: ONNX Runtime cannot load the graph")
        return EmptySceneDetector()

    routes = RouteTable(EmptySceneDetector(), load, lambda name: experiment)
    detections, dead, alive = _serve(settings, routes, [{"experiment": "exp", "variant": "candidate"},
                                                        {"experiment": "exp", "variant": "control"}, {}])
    assert alive
    assert [(d["frame_seq"], d["_headers"]["dlq-error-code"], d["_headers"]["dlq-error-detail"]) for d in dead] == [
        (0, b"MODEL_002", b"variant-model-unavailable")]
    assert b"[MODEL_002]" in dead[0]["_headers"]["dlq-reason"]
    assert [(r["frame_seq"], r["variant"]) for r in detections] == [(1, "control"), (2, "")]
