"""Detector end to end on hand-built ONNX models, plus the session factory it stands on."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.detector import Detector, open_session
from models.errors import ChecksumMismatch, InferenceFailed, ModelLoadError, ModelNotFound, PostprocessingFailed
from models.manifest import ModelManifest
from models.registry import ModelRegistry, RegisteredModel, sha256_file
from models.runtime import CPU, create_session
from tests.onnx_models import model_fields, write_mean_model

INPUT = 64
CPU_ONLY = [CPU]
# Two anchors of a yolov5 layout with one class: cx, cy, w, h, objectness, class prob. Objectness is added by
# the graph from the image (see write_brightness_model); the second anchor is a near-duplicate for NMS to remove.
BOXES = np.array([[[32, 32, 16, 16, 0, 1], [32.5, 32, 16, 16, 0, 1]]], np.float32)


def write_brightness_model(path: Path, batch: int | str = "N", objectness_shape: list[int] | None = None) -> Path:
    """yolov5-format model whose boxes are BOXES and whose objectness is the mean of the image tensor.

    Scores thus differ per image, so mixing up images of a batch changes results. ``objectness_shape`` forces a
    Reshape of the per-image means to a fixed shape (breaking batches of other sizes).
    """
    objectness_column = np.zeros((1, 1, 6), np.float32)
    objectness_column[..., 4] = 1
    return write_mean_model(path, BOXES, objectness_column, input_hw=(INPUT, INPUT), batch=batch,
                            mean_shape=objectness_shape or [-1, 1, 1], name="brightness")


def manifest_fields(**overrides: Any) -> dict[str, Any]:
    return model_fields("bright", INPUT, ["person"], letterbox_fill=0, confidence_threshold=0.1) | overrides


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    registry = ModelRegistry(tmp_path / "registry")
    registry.register(write_brightness_model(tmp_path / "bright.onnx"), **manifest_fields())
    registry.promote("bright", "1.0.0")
    return registry


def grey(width: int, height: int, value: int) -> np.ndarray:
    return np.full((height, width, 3), value, np.uint8)


FRAMES = [grey(128, 64, 200), grey(48, 96, 120), grey(64, 64, 250)]


def test_detect_returns_the_models_box_in_each_frames_own_coordinates(registry: ModelRegistry) -> None:
    detector = Detector.load(registry, "bright", providers=CPU_ONLY)

    wide, tall, square = detector.detect(FRAMES)

    # Input box [24, 24, 40, 40]; 128x64 -> scale 0.5, pad_y 16; 48x96 -> scale 2/3, pad_x 16; 64x64 -> identity.
    np.testing.assert_allclose(wide.xyxy, [[48, 16, 80, 48]], atol=1e-4)
    np.testing.assert_allclose(tall.xyxy, [[12, 36, 36, 60]], atol=1e-4)
    np.testing.assert_allclose(square.xyxy, [[24, 24, 40, 40]], atol=1e-4)


def test_a_batch_of_three_gives_the_same_per_image_results_as_three_single_calls(registry: ModelRegistry) -> None:
    detector = Detector.load(registry, "bright", providers=CPU_ONLY, max_batch=3)

    batched = detector.detect(FRAMES)
    singles = [detector.detect([frame])[0] for frame in FRAMES]

    assert len({float(d.confidence[0]) for d in batched}) == 3  # the images really score differently
    for together, alone in zip(batched, singles, strict=True):
        np.testing.assert_allclose(together.xyxy, alone.xyxy, atol=1e-5)
        np.testing.assert_allclose(together.confidence, alone.confidence, rtol=1e-5)
        np.testing.assert_array_equal(together.class_id, alone.class_id)


def test_io_binding_gives_the_same_detections_as_a_plain_run(registry: ModelRegistry) -> None:
    plain = Detector.load(registry, "bright", providers=CPU_ONLY, max_batch=3)
    model = registry.resolve("bright")
    bound = Detector(model, open_session(model, CPU_ONLY, max_batch=3), max_batch=3, io_binding=True)
    bound.warmup()

    for with_binding, without in zip(bound.detect(FRAMES), plain.detect(FRAMES), strict=True):
        np.testing.assert_array_equal(with_binding.xyxy, without.xyxy)
        np.testing.assert_array_equal(with_binding.confidence, without.confidence)
        np.testing.assert_array_equal(with_binding.class_id, without.class_id)
    assert bound.detect(FRAMES[:1])[0].confidence.size == 1  # a smaller batch rebinds cleanly


def test_more_images_than_max_batch_are_processed_in_chunks_in_order(registry: ModelRegistry) -> None:
    detector = Detector.load(registry, "bright", providers=CPU_ONLY, max_batch=2)

    chunked = detector.detect(FRAMES)
    reference = Detector.load(registry, "bright", providers=CPU_ONLY, max_batch=3).detect(FRAMES)

    np.testing.assert_allclose([d.confidence[0] for d in chunked], [d.confidence[0] for d in reference], rtol=1e-5)


def test_detector_on_a_model_with_static_batch_one_handles_several_images(tmp_path: Path) -> None:
    path = write_brightness_model(tmp_path / "static.onnx", batch=1)
    manifest = ModelManifest(**manifest_fields(), sha256=sha256_file(path), created_at=datetime.now(UTC))

    detector = Detector.from_model(RegisteredModel(path, manifest), providers=CPU_ONLY, max_batch=8)

    assert detector.max_batch == 1
    assert [len(d) for d in detector.detect(FRAMES)] == [1, 1, 1]


def test_per_call_confidence_override_changes_what_is_kept(registry: ModelRegistry) -> None:
    detector = Detector.load(registry, "bright", providers=CPU_ONLY)
    dark = grey(64, 64, 20)  # mean ~0.08, below the manifest threshold 0.1

    assert len(detector.detect([dark])[0]) == 0
    assert len(detector.detect([dark], conf=0.05)[0]) == 1


def test_per_call_iou_override_changes_what_nms_suppresses(registry: ModelRegistry) -> None:
    detector = Detector.load(registry, "bright", providers=CPU_ONLY)

    assert len(detector.detect(FRAMES[2:])[0]) == 1
    assert len(detector.detect(FRAMES[2:], iou=0.99)[0]) == 2


def test_load_refuses_a_model_whose_file_was_tampered_with(registry: ModelRegistry) -> None:
    stored = registry.resolve("bright").path
    stored.write_bytes(stored.read_bytes() + b"\0")

    with pytest.raises(ChecksumMismatch):
        Detector.load(registry, "bright", providers=CPU_ONLY)


def test_load_of_an_unknown_model_is_not_found(registry: ModelRegistry) -> None:
    with pytest.raises(ModelNotFound):
        Detector.load(registry, "missing@1.0.0", providers=CPU_ONLY)


def test_a_model_that_only_runs_full_batches_is_refused_at_load_not_mid_stream(tmp_path: Path) -> None:
    path = write_brightness_model(tmp_path / "batch4.onnx", objectness_shape=[4, 1, 1])  # declares batch "N"
    manifest = ModelManifest(**manifest_fields(), sha256=sha256_file(path), created_at=datetime.now(UTC))

    with pytest.raises(ModelLoadError, match="warm-up"):
        Detector.from_model(RegisteredModel(path, manifest), providers=CPU_ONLY, max_batch=4)


def test_warm_up_on_cpu_runs_a_full_batch_and_a_single_frame(registry: ModelRegistry) -> None:
    detector = Detector.load(registry, "bright", providers=CPU_ONLY, max_batch=6)

    assert detector.warmup_batch_sizes() == [6, 1]


def test_a_model_that_fails_its_full_batch_warm_up_is_a_load_error(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "registry")
    path = write_brightness_model(tmp_path / "batch1.onnx", objectness_shape=[1, 1, 1])
    registry.register(path, **manifest_fields())  # passes: registration runs a single frame

    with pytest.raises(ModelLoadError, match="warm-up"):
        Detector.load(registry, "bright@1.0.0", providers=CPU_ONLY, max_batch=4)


def test_status_after_load_reports_ready_with_identity_provider_and_warm_up_time(registry: ModelRegistry) -> None:
    detector = Detector.load(registry, "bright", providers=CPU_ONLY)

    status = detector.status()

    assert status["state"] == "ready"
    assert (status["name"], status["version"], status["provider"]) == ("bright", "1.0.0", CPU)
    assert status["warmup_ms"] > 0


def test_last_timings_cover_the_last_call(registry: ModelRegistry) -> None:
    detector = Detector.load(registry, "bright", providers=CPU_ONLY)

    detector.detect(FRAMES)

    timings = detector.last_timings
    assert timings.preprocess_ms > 0 and timings.infer_ms > 0 and timings.postprocess_ms > 0


def test_session_factory_logs_one_line_naming_the_provider_actually_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_brightness_model(tmp_path / "m.onnx")

    with caplog.at_level(logging.INFO, logger="models.runtime"):
        info = create_session(path)

    lines = [r.getMessage() for r in caplog.records if r.name == "models.runtime"]
    assert len(lines) == 1 and info.provider in lines[0]
    assert info.provider == info.session.get_providers()[0]


def test_session_factory_reports_an_unloadable_file_as_a_load_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"not an onnx model")

    with pytest.raises(ModelLoadError, match="valid ONNX"):
        create_session(path, CPU_ONLY)


class _FailingOrtSession:
    """Stands in for ONNX Runtime's session at run time, for failures a CPU test cannot cause for real (an
    exhausted allocator) or that a well-formed model never produces (outputs of another shape than at warm-up)."""

    def __init__(self, fail_with: BaseException | None = None, outputs: list[np.ndarray] | None = None) -> None:
        self.fail_with, self.outputs = fail_with, outputs

    def run(self, output_names, feeds):
        if self.fail_with is not None:
            raise self.fail_with
        return self.outputs


def _loaded_with(registry: ModelRegistry, ort_session: _FailingOrtSession, provider: str = CPU) -> Detector:
    import dataclasses

    detector = Detector.load(registry, "bright@production", providers=CPU_ONLY)
    detector._session = dataclasses.replace(detector._session, session=ort_session)
    detector.provider = provider
    return detector


@pytest.mark.parametrize("failure, provider, code, detail", [
    (RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned while running Conv"),
     CPU, "MODEL_003", "inference-failed"),
    (MemoryError(), CPU, "RES_001", "host-memory-exhausted"),
    (RuntimeError("[ONNXRuntimeError] : 6 : Failed to allocate memory for requested buffer of size 8388608"),
     "CUDAExecutionProvider", "RES_002", "gpu-memory-exhausted"),
])
def test_a_failed_model_run_is_classified_by_the_taxonomy(registry, failure, provider, code, detail) -> None:
    detector = _loaded_with(registry, _FailingOrtSession(fail_with=failure), provider)
    with pytest.raises(InferenceFailed) as raised:
        detector.detect(FRAMES[:1])
    assert (raised.value.code, raised.value.detail) == (code, detail)


def test_outputs_the_format_cannot_decode_are_a_postprocessing_failure_inf_003(registry) -> None:
    detector = _loaded_with(registry, _FailingOrtSession(outputs=[np.zeros((0, 2, 6), np.float32)]))
    with pytest.raises(PostprocessingFailed) as raised:
        detector.detect(FRAMES[:1])
    assert (raised.value.code, raised.value.detail) == ("INF_003", "postprocess-failed")
    assert "cannot be decoded as yolov5" in str(raised.value)
