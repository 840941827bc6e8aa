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


@pytest.mark.parametrize("enabled", [True, False])
def test_the_output_distribution_is_exported_unless_turned_off(enabled):
    from stream_apps.inference.metrics import InferenceMetrics

    metrics = InferenceMetrics() if enabled else InferenceMetrics(output_distribution=False)
    boxes = Detections(xyxy=np.array([[0, 0, 10, 10]], np.float32), confidence=np.array([0.9], np.float32),
                       class_id=np.array([0]))
    metrics.outputs.observe(DETECTOR, "", [boxes], [100 * 100])

    names = {s.name for family in metrics.registry.collect() for s in family.samples}
    exported = {n for n in names if n.startswith(("camcount_inference_detections_per_frame",
                                                  "camcount_inference_detection_confidence",
                                                  "camcount_inference_box_area_ratio"))}
    assert bool(exported) is enabled
    assert "camcount_inference_frames_total" in {f.name + "_total" for f in metrics.registry.collect()}


def test_the_output_metrics_bench_model_keeps_every_box_it_outputs_and_observe_is_timed_on_them(tmp_path):
    from camcount.output_metrics_bench import observe_cost, register_boxes_model
    from models.detector import Detector
    from models.registry import ModelRegistry
    from models.runtime import CPU

    registry = ModelRegistry(tmp_path / "registry")
    detector = Detector.from_model(registry.resolve(register_boxes_model(registry, tmp_path, boxes=10)),
                                   providers=[CPU], max_batch=4)
    images = [np.full((120, 160, 3), shade, np.uint8) for shade in (0, 128, 255)]
    (found,) = detector.detect(images[:1])
    assert len(found) == 10 and np.bincount(found.class_id).tolist() == [4, 3, 3]

    cost_us, boxes = observe_cost(detector, images, batch=2)
    assert boxes == 10 and 0 < cost_us < 10_000
