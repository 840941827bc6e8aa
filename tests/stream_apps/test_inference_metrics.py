"""The worker's output-distribution metrics: detections per frame, confidence and box area per class."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from models.detections import Detections
from stream_apps.inference.metrics import OutputDistribution

DETECTOR = SimpleNamespace(name="yolo", version="1.0.0", manifest=SimpleNamespace(class_names=["person", "car"]))


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels)


def test_a_batch_counts_each_frame_s_boxes_and_each_box_s_confidence_and_area_share_by_class():
    registry = CollectorRegistry()
    outputs = OutputDistribution(registry)
    boxes = Detections(xyxy=np.array([[0, 0, 10, 10], [0, 0, 50, 20], [5, 5, 25, 25]], np.float32),
                       confidence=np.array([0.95, 0.35, 0.5], np.float32), class_id=np.array([0, 1, 0]))
    outputs.observe(DETECTOR, "b", [boxes, Detections.empty()], [100 * 100, 100 * 100])

    frame = {"model": "yolo", "version": "1.0.0", "variant": "b"}
    person, car = {**frame, "class": "person"}, {**frame, "class": "car"}
    assert _value(registry, "camcount_inference_detections_per_frame_count", **frame) == 2
    assert _value(registry, "camcount_inference_detections_per_frame_sum", **frame) == 3
    assert _value(registry, "camcount_inference_detection_confidence_count", **person) == 2
    assert _value(registry, "camcount_inference_detection_confidence_bucket", **person, le="0.9") == 1
    assert _value(registry, "camcount_inference_box_area_ratio_sum", **car) == pytest.approx(0.1)
    assert _value(registry, "camcount_inference_box_area_ratio_sum", **person) == pytest.approx(0.01 + 0.04)
