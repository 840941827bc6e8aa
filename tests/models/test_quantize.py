"""Static int8 quantization into a new registered version, and the agreement metrics that judge it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from models.agreement import average_precision, match_detections
from models.detections import Detections
from models.errors import ModelVersionExists
from models.quantize import agreement, decode_tail_nodes, interleave_split, name_nodes, quantize_static_int8
from models.registry import ModelRegistry
from tests.onnx_models import images_input, make_model, model_fields

INPUT = 32
GRID = 8
# Output row = sigmoid(row) * SCALE + OFFSET: cx, cy within 8 px of the anchor's grid cell, w and h up to 16 px,
# objectness and class probability as they are.
SCALE = np.array([[[8, 8, 16, 16, 1, 1]]], np.float32)
_CELL = INPUT // GRID
OFFSET = np.zeros((1, GRID * GRID, 6), np.float32)
OFFSET[0, :, 0] = np.tile(np.arange(GRID), GRID) * _CELL - _CELL / 2
OFFSET[0, :, 1] = np.repeat(np.arange(GRID), GRID) * _CELL - _CELL / 2


def conv_model(named: bool = True) -> onnx.ModelProto:
    """yolov5-format detector: two convolutions, then a decode tail (reshape, transpose, sigmoid, scale, offset).

    64 anchors (an 8x8 grid); deterministic random weights, so boxes and scores depend on image content.
    """
    rng = np.random.default_rng(0)
    output = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", GRID * GRID, 6])
    nodes = [
        helper.make_node("Conv", ["images", "w1", "b1"], ["c1"], name="conv1", kernel_shape=[3, 3], strides=[4, 4],
                         pads=[1, 1, 1, 1]),
        helper.make_node("LeakyRelu", ["c1"], ["a1"], name="act1", alpha=0.1),
        helper.make_node("Conv", ["a1", "w2", "b2"], ["c2"], name="head"),
        helper.make_node("Reshape", ["c2", "shape"], ["flat"], name="reshape"),
        helper.make_node("Transpose", ["flat"], ["rows"], name="transpose", perm=[0, 2, 1]),
        helper.make_node("Sigmoid", ["rows"], ["probs"], name="sigmoid"),
        helper.make_node("Mul", ["probs", "scale"], ["scaled"], name="scale"),
        helper.make_node("Add", ["scaled", "offset"], ["output"], name="offset"),
    ]
    if not named:
        for node in nodes:
            node.name = ""
    initializers = [
        numpy_helper.from_array(rng.normal(0, 0.5, (8, 3, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(np.zeros(8, np.float32), "b1"),
        numpy_helper.from_array(rng.normal(0, 0.5, (6, 8, 1, 1)).astype(np.float32), "w2"),
        numpy_helper.from_array(np.array([0, 0, 0, 0, 1, 1], np.float32), "b2"),
        numpy_helper.from_array(np.array([0, 6, -1], np.int64), "shape"),
        numpy_helper.from_array(SCALE, "scale"),
        numpy_helper.from_array(OFFSET, "offset"),
    ]
    return make_model(nodes, "conv", [images_input((INPUT, INPUT))], [output], initializers)


def write_conv_model(path: Path) -> Path:
    onnx.save(conv_model(), path)
    return path


def manifest_fields(**overrides: Any) -> dict[str, Any]:
    return model_fields("conv", INPUT, ["person"], confidence_threshold=0.5) | overrides


def frames(count: int, seed: int) -> list[np.ndarray]:
    """Smooth random BGR frames (blurred noise blobs), so activations have real structure."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(count, 6, 8, 3), dtype=np.uint8)
    return [np.ascontiguousarray(np.kron(image, np.ones((8, 8, 1), np.uint8))) for image in small]


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    registry = ModelRegistry(tmp_path / "registry")
    registry.register(write_conv_model(tmp_path / "conv.onnx"), **manifest_fields())
    return registry


def dets(boxes: list[list[float]], confidence: list[float], classes: list[int]) -> Detections:
    return Detections(np.array(boxes, np.float32).reshape(-1, 4), np.array(confidence), np.array(classes))


def test_equal_split_alternates_positions() -> None:
    assert interleave_split(6, 3) == ([0, 2, 4], [1, 3, 5])


def test_uneven_split_is_disjoint_complete_and_spread() -> None:
    first, second = interleave_split(10, 3)
    assert len(first) == 3 and sorted(first + second) == list(range(10))
    assert max(np.diff(first)) <= 4


def test_decode_tail_is_everything_after_the_last_convolutions() -> None:
    assert decode_tail_nodes(conv_model(), "decode") == ["reshape", "transpose", "sigmoid", "scale", "offset"]


def test_head_exclusion_adds_the_convolutions_feeding_the_decode_tail() -> None:
    assert decode_tail_nodes(conv_model(), "head") == ["head", "reshape", "transpose", "sigmoid", "scale", "offset"]


def test_no_exclusion_keeps_nothing_in_fp32() -> None:
    assert decode_tail_nodes(conv_model(), "none") == []


def test_unnamed_nodes_get_unique_names() -> None:
    model = name_nodes(conv_model(named=False))
    names = [node.name for node in model.graph.node]
    assert all(names) and len(set(names)) == len(names)


def test_a_box_matches_a_truth_of_its_class_with_iou_at_least_half() -> None:
    truth = dets([[0, 0, 10, 10]], [1.0], [0])
    assert match_detections(dets([[0, 0, 10, 5]], [0.9], [0]), truth).tolist() == [True]  # IoU 0.5


def test_a_box_of_another_class_does_not_match() -> None:
    truth = dets([[0, 0, 10, 10]], [1.0], [0])
    assert match_detections(dets([[0, 0, 10, 10]], [0.9], [1]), truth).tolist() == [False]


def test_a_box_overlapping_less_than_half_does_not_match() -> None:
    truth = dets([[0, 0, 10, 10]], [1.0], [0])
    assert match_detections(dets([[0, 0, 10, 4]], [0.9], [0]), truth).tolist() == [False]


def test_each_truth_is_claimed_once_by_the_most_confident_box() -> None:
    truth = dets([[0, 0, 10, 10]], [1.0], [0])
    predicted = dets([[0, 0, 10, 9], [0, 0, 10, 10]], [0.5, 0.9], [0, 0])
    assert match_detections(predicted, truth).tolist() == [False, True]


def test_average_precision_integrates_the_precision_envelope() -> None:
    # Ranked hits: TP, FP, TP against 2 truths -> recall 0.5 at precision 1, recall 1 at precision 2/3.
    ap = average_precision(np.array([0.9, 0.8, 0.7]), np.array([True, False, True]), truths=2)
    assert ap == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


def test_identical_detections_agree_completely() -> None:
    frame = dets([[0, 0, 10, 10], [20, 20, 30, 40]], [0.9, 0.4], [0, 2])
    result = agreement([frame, Detections.empty()], [frame, Detections.empty()])
    assert (result.precision, result.recall, result.map50, result.matched) == (1.0, 1.0, 1.0, 2)


def test_missed_and_extra_boxes_lower_recall_and_precision() -> None:
    truth = dets([[0, 0, 10, 10], [20, 20, 30, 30]], [1, 1], [0, 0])
    predicted = dets([[0, 0, 10, 10], [50, 50, 60, 60], [70, 70, 80, 80]], [0.9, 0.8, 0.7], [0, 0, 0])
    result = agreement([predicted], [truth])
    assert (result.precision, result.recall) == (pytest.approx(1 / 3), 0.5)


def test_quantized_model_is_registered_as_int8_with_its_lineage(registry: ModelRegistry) -> None:
    quantize_static_int8(registry, "conv@1.0.0", "1.1.0", frames(8, seed=1), frames(8, seed=2))
    manifest = registry.verify("conv@1.1.0").manifest
    assert manifest.precision == "int8"
    assert manifest.source == {"kind": "quantized", "parent": "conv@1.0.0", "calibration_frames": 8,
                               "exclude": "decode"}
    assert manifest.class_names == ["person"] and manifest.confidence_threshold == 0.5


def test_quantized_graph_is_qdq_with_the_decode_tail_left_in_float(registry: ModelRegistry) -> None:
    quantize_static_int8(registry, "conv@1.0.0", "1.1.0", frames(8, seed=1), frames(8, seed=2))
    graph = onnx.load(str(registry.resolve("conv@1.1.0").path)).graph
    producers = {out: node.op_type for node in graph.node for out in node.output}
    ops = {node.op_type for node in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    sigmoid = next(node for node in graph.node if node.op_type == "Sigmoid")
    assert producers[sigmoid.input[0]] == "Transpose"


def test_report_compares_speed_at_batch_1_and_8_and_agreement_on_heldout_frames(registry: ModelRegistry) -> None:
    report = quantize_static_int8(registry, "conv@1.0.0", "1.1.0", frames(16, seed=1), frames(16, seed=2))
    assert [s.batch_size for s in report.speed] == [1, 8]
    assert all(s.fp32_infer_ms > 0 and s.int8_infer_ms > 0 for s in report.speed)
    assert report.agreement.frames == 16 and report.agreement.fp32_boxes > 0
    assert report.agreement.recall > 0.8 and report.agreement.precision > 0.8


def test_an_existing_version_is_refused_before_calibrating(registry: ModelRegistry) -> None:
    with pytest.raises(ModelVersionExists, match="conv@1.0.0 is already registered"):
        quantize_static_int8(registry, "conv@1.0.0", "1.0.0", frames(2, seed=1), frames(8, seed=2))
    assert [m.version for m in registry.list()[0].versions] == ["1.0.0"]


def test_an_int8_model_is_not_quantized_again(registry: ModelRegistry) -> None:
    quantize_static_int8(registry, "conv@1.0.0", "1.1.0", frames(2, seed=1), frames(8, seed=2))
    with pytest.raises(ValueError, match="conv@1.1.0 is int8: quantize its fp32 parent"):
        quantize_static_int8(registry, "conv@1.1.0", "1.2.0", frames(2, seed=1), frames(8, seed=2))


def test_too_few_heldout_frames_for_a_batch_of_8_are_refused_before_registering(registry: ModelRegistry) -> None:
    with pytest.raises(ValueError, match="8 held-out frames"):
        quantize_static_int8(registry, "conv@1.0.0", "1.1.0", frames(8, seed=1), frames(7, seed=2))
    assert [m.version for m in registry.list()[0].versions] == ["1.0.0"]
