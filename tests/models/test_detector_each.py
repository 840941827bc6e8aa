"""``Detector.detect_each``: one model run, each image postprocessed with its own thresholds, the same result as
one ``detect`` per image with those thresholds (what lets the API batch requests with different options)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.detector import Detector, DetectParams
from models.registry import ModelRegistry
from producers.sources import sample_frames
from tests.pipeline import footage_path


def test_detect_each_equals_detect_per_image_with_its_parameters(model_registry: str) -> None:
    registry = ModelRegistry(Path(model_registry))
    detector = Detector.from_model(registry.resolve("yolov4-tiny@production"), providers=["CPUExecutionProvider"],
                                   max_batch=4)
    frames = sample_frames(footage_path(), 3)
    params = [DetectParams(), DetectParams(conf=0.5, iou=0.3), DetectParams(max_detections=2)]

    together = detector.detect_each(frames, params)

    for frame, p, got in zip(frames, params, together, strict=True):
        (alone,) = detector.detect([frame], conf=p.conf, iou=p.iou, max_detections=p.max_detections)
        np.testing.assert_allclose(got.xyxy, alone.xyxy, atol=1e-3)
        assert got.class_id.tolist() == alone.class_id.tolist()
    assert len(together[2]) == 2 and len(together[1]) < len(together[0])
