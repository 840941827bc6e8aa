"""Decoders, class-aware NMS and mapping back to frame coordinates, specified on hand-built ONNX outputs."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from models.errors import OutputFormatMismatch
from models.postprocess import (
    batched_nms,
    check_output_shape,
    decode_end2end,
    decode_yolov5,
    decode_yolov8,
    postprocess,
)
from models.preprocess import LetterboxTransform


def run_constant_model(values: np.ndarray) -> np.ndarray:
    """Run through ONNX Runtime a graph that ignores its image input and emits ``values`` as ``output``."""
    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 32, 32])
    output = helper.make_tensor_value_info("output", TensorProto.FLOAT, list(values.shape))
    node = helper.make_node("Constant", [], ["output"], value=numpy_helper.from_array(values.astype(np.float32)))
    model = helper.make_model(
        helper.make_graph([node], "constant", [images], [output]), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (result,) = session.run(None, {"images": np.zeros((values.shape[0], 3, 32, 32), np.float32)})
    return result


def yolov5_row(cx: float, cy: float, w: float, h: float, objectness: float, class_probs: list[float]) -> list[float]:
    return [cx, cy, w, h, objectness, *class_probs]


def test_yolov5_decoder_converts_centre_boxes_and_multiplies_objectness_by_class_probability() -> None:
    output = run_constant_model(
        np.array(
            [[yolov5_row(50, 40, 20, 10, 0.9, [0.1, 0.8]), yolov5_row(10, 10, 4, 4, 0.1, [0.9, 0.9])]], np.float32
        )
    )

    (candidates,) = decode_yolov5(output, conf_threshold=0.25)

    np.testing.assert_array_equal(candidates.xyxy, [[40, 35, 60, 45]])
    np.testing.assert_allclose(candidates.scores, [0.72], rtol=1e-6)
    np.testing.assert_array_equal(candidates.class_ids, [1])


def test_yolov5_decoder_drops_boxes_whose_product_score_is_below_threshold_despite_high_objectness() -> None:
    output = run_constant_model(np.array([[yolov5_row(50, 40, 20, 10, 0.9, [0.2, 0.1])]], np.float32))

    (candidates,) = decode_yolov5(output, conf_threshold=0.25)

    assert len(candidates.xyxy) == 0


def test_yolov5_decoder_keeps_images_of_a_batch_apart() -> None:
    output = run_constant_model(
        np.array([[yolov5_row(50, 40, 20, 10, 0.9, [1.0])], [yolov5_row(50, 40, 20, 10, 0.0, [1.0])]], np.float32)
    )

    first, second = decode_yolov5(output, conf_threshold=0.25)

    assert (len(first.xyxy), len(second.xyxy)) == (1, 0)


def test_yolov8_decoder_reads_anchors_as_columns_without_objectness() -> None:
    # Anchors as columns: rows are cx, cy, w, h, score(class 0), score(class 1), score(class 2).
    anchors = np.array(
        [
            [100, 30],
            [200, 30],
            [40, 6],
            [80, 6],
            [0.1, 0.2],
            [0.05, 0.1],
            [0.6, 0.1],
        ],
        np.float32,
    )[None]
    output = run_constant_model(anchors)

    (candidates,) = decode_yolov8(output, conf_threshold=0.25)

    np.testing.assert_array_equal(candidates.xyxy, [[80, 160, 120, 240]])
    np.testing.assert_allclose(candidates.scores, [0.6])
    np.testing.assert_array_equal(candidates.class_ids, [2])


def test_end2end_decoder_takes_corner_boxes_as_given_and_skips_padding_rows() -> None:
    output = run_constant_model(np.array([[[1, 2, 30, 40, 0.8, 3], [0, 0, 0, 0, 0, 0]]], np.float32))

    (candidates,) = decode_end2end(output, conf_threshold=0.25)

    np.testing.assert_array_equal(candidates.xyxy, [[1, 2, 30, 40]])
    np.testing.assert_allclose(candidates.scores, [0.8])
    np.testing.assert_array_equal(candidates.class_ids, [3])


def test_nms_of_no_boxes_keeps_nothing() -> None:
    keep = batched_nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32), 0.45)

    assert keep.shape == (0,)


def test_nms_keeps_only_the_best_of_a_cluster_of_same_class_boxes() -> None:
    boxes = np.array([[0, 0, 100, 100], [2, 2, 102, 102], [1, 0, 101, 99], [0, 1, 99, 101]], np.float32)
    scores = np.array([0.5, 0.9, 0.7, 0.6], np.float32)

    keep = batched_nms(boxes, scores, np.zeros(4, np.int32), 0.45)

    np.testing.assert_array_equal(keep, [1])


def test_nms_never_suppresses_overlapping_boxes_of_different_classes() -> None:
    boxes = np.tile(np.array([[10, 10, 50, 50]], np.float32), (5, 1))
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5], np.float32)

    keep = batched_nms(boxes, scores, np.array([0, 1, 2, 3, 79], np.int32), 0.45)

    np.testing.assert_array_equal(keep, [0, 1, 2, 3, 4])


def test_nms_suppresses_only_above_the_iou_threshold_at_sub_pixel_precision() -> None:
    # IoU = 84 / 116 = 0.724 (rounding to whole pixels would give 0.667).
    boxes = np.array([[0, 0, 10, 10], [1.6, 0, 11.6, 10]], np.float32)
    scores = np.array([0.9, 0.8], np.float32)
    classes = np.zeros(2, np.int32)

    assert batched_nms(boxes, scores, classes, 0.70).tolist() == [0]
    assert batched_nms(boxes, scores, classes, 0.73).tolist() == [0, 1]


def test_nms_caps_the_number_of_kept_boxes_at_the_highest_scores() -> None:
    boxes = np.array([[i * 20, 0, i * 20 + 10, 10] for i in range(10)], np.float32)
    scores = np.linspace(0.1, 1.0, 10, dtype=np.float32)

    keep = batched_nms(boxes, scores, np.zeros(10, np.int32), 0.45, max_detections=3)

    np.testing.assert_array_equal(keep, [9, 8, 7])


def test_postprocess_maps_boxes_back_to_the_source_frame() -> None:
    # 800x400 frame letterboxed into 400x400: scale 0.5, 100 px of padding above and below.
    transform = LetterboxTransform(scale=0.5, pad_x=0, pad_y=100, src_w=800, src_h=400)
    output = run_constant_model(np.array([[yolov5_row(100, 150, 40, 20, 0.9, [0.9])]], np.float32))

    (detections,) = postprocess([output], "yolov5", [transform], conf=0.25, iou=0.45)

    np.testing.assert_allclose(detections.xyxy, [[160, 80, 240, 120]])
    np.testing.assert_array_equal(detections.class_id, [0])


def test_postprocess_drops_boxes_lying_entirely_in_the_padding() -> None:
    transform = LetterboxTransform(scale=0.5, pad_x=0, pad_y=100, src_w=800, src_h=400)
    output = run_constant_model(np.array([[yolov5_row(100, 50, 40, 20, 0.9, [0.9])]], np.float32))

    (detections,) = postprocess([output], "yolov5", [transform], conf=0.25, iou=0.45)

    assert len(detections) == 0


def test_postprocess_does_not_suppress_end2end_output() -> None:
    transform = LetterboxTransform(scale=1.0, pad_x=0, pad_y=0, src_w=100, src_h=100)
    output = run_constant_model(np.array([[[0, 0, 50, 50, 0.9, 0], [1, 1, 50, 50, 0.8, 0]]], np.float32))

    (detections,) = postprocess([output], "end2end", [transform], conf=0.25, iou=0.45)

    assert len(detections) == 2


@pytest.mark.parametrize(
    ("shape", "fmt"),
    [
        ((1, 10, 85), "yolov8"),  # a yolov5 layout declared as yolov8
        ((1, 84, 10), "yolov5"),  # a yolov8 layout declared as yolov5
        ((1, 10, 86), "yolov5"),  # one class more than the manifest lists
        ((1, 10, 7), "end2end"),
        ((10, 85), "yolov5"),  # no batch dimension
    ],
)
def test_output_shape_check_refuses_layouts_that_contradict_the_declared_format(
    shape: tuple[int, ...], fmt: str
) -> None:
    with pytest.raises(OutputFormatMismatch, match=fmt):
        check_output_shape(np.zeros(shape, np.float32), fmt, num_classes=80, batch_size=1)  # type: ignore[arg-type]


def test_output_shape_check_refuses_end2end_class_ids_beyond_the_class_names() -> None:
    output = np.array([[[0, 0, 5, 5, 0.9, 2]]], np.float32)

    with pytest.raises(OutputFormatMismatch, match="class ids"):
        check_output_shape(output, "end2end", num_classes=2, batch_size=1)
