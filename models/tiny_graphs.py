"""Tiny real ONNX detectors, built with onnx's helpers: the model tests' toys and the near-zero-cost model of
``camcount bench ceiling``, one set of builders for both.

Outputs use the yolov5 layout: rows of ``cx, cy, w, h, objectness, class probs...`` per anchor, so the detector's
real decoding, NMS and box mapping run on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from models.manifest import ModelManifest
from models.registry import ModelRegistry

# One box at (16, 16), 8 x 8 px, objectness 1, class probability 1: inside a 32 x 32 input.
FIXED_BOX = np.array([[[16, 16, 8, 8, 1, 1]]], np.float32)

NULL_DETECTOR_NAME = "null-detector"
NULL_DETECTOR_CLASSES = 80
"""As many classes as the COCO detectors camcount serves, so each detections record carries as many class names."""


def make_model(nodes: list[onnx.NodeProto], name: str, inputs: list[onnx.ValueInfoProto],
               outputs: list[onnx.ValueInfoProto], initializers: list[onnx.TensorProto]) -> onnx.ModelProto:
    """An opset-17, IR-8 model of one graph."""
    model = helper.make_model(helper.make_graph(nodes, name, inputs, outputs, initializers),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def images_input(input_hw: tuple[int, int], batch: int | str = "N") -> onnx.ValueInfoProto:
    """The float ``images`` input, NCHW with three channels."""
    return helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, *input_hw])


def write_mean_model(path: Path, base: np.ndarray, weight: np.ndarray | None = None, *,
                     input_hw: tuple[int, int], batch: int | str = "N", mean_shape: Sequence[int] = (-1, 1, 1),
                     name: str = "toy") -> Path:
    """ONNX file whose ``output`` is ``mean(image) * weight + base``, one [A, D] block per image of the batch.

    ``base`` is [1, A, D]; ``weight`` broadcasts against it (e.g. [1, 1, D]) and defaults to zero, which makes
    the output the constant ``base``. The per-image means are reshaped to ``mean_shape`` first: a fixed shape
    there breaks batches of other sizes.
    """
    output = helper.make_tensor_value_info("output", TensorProto.FLOAT, None)
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Reshape", ["mean", "shape"], ["mean3d"]),
        helper.make_node("Mul", ["mean3d", "weight"], ["weighted"]),
        helper.make_node("Add", ["weighted", "base"], ["output"]),
    ]
    initializers = [
        numpy_helper.from_array(np.array(mean_shape, np.int64), "shape"),
        numpy_helper.from_array(np.zeros((1, 1, 1), np.float32) if weight is None else weight.astype(np.float32),
                                "weight"),
        numpy_helper.from_array(base.astype(np.float32), "base"),
    ]
    onnx.save(make_model(nodes, name, [images_input(input_hw, batch)], [output], initializers), path)
    return path


def write_constant_model(path: Path, output: np.ndarray, input_hw: tuple[int, int]) -> Path:
    """ONNX file whose ``output`` is the constant ``output`` [1, A, D] repeated for every image of the batch."""
    return write_mean_model(path, output, input_hw=input_hw)


def write_fixed_box_model(path: Path) -> Path:
    """yolov5-format model on 32 x 32 input with the one box FIXED_BOX whatever the image."""
    return write_constant_model(path, FIXED_BOX, (32, 32))


def write_tiled_model(path: Path, output: np.ndarray, input_hw: tuple[int, int], name: str = "tiled") -> Path:
    """ONNX file whose ``output`` is the constant ``output`` [1, A, D] tiled once per image of the batch, without
    reading a pixel: only the batch dimension of ``images`` is used (Shape -> Slice -> Concat -> Tile), so its
    cost is the same at any input size."""
    nodes = [
        helper.make_node("Shape", ["images"], ["shape"]),
        helper.make_node("Slice", ["shape", "zero", "one"], ["batch"]),
        helper.make_node("Concat", ["batch", "ones"], ["repeats"], axis=0),
        helper.make_node("Tile", ["block", "repeats"], ["output"]),
    ]
    initializers = [
        numpy_helper.from_array(np.array([0], np.int64), "zero"),
        numpy_helper.from_array(np.array([1], np.int64), "one"),
        numpy_helper.from_array(np.ones(output.ndim - 1, np.int64), "ones"),
        numpy_helper.from_array(output.astype(np.float32), "block"),
    ]
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", *output.shape[1:]])
    onnx.save(make_model(nodes, name, [images_input(input_hw)], [out], initializers), path)
    return path


def null_detector_output(input_size: int, num_classes: int = NULL_DETECTOR_CLASSES, box: bool = True) -> np.ndarray:
    """[1, 1, 5 + num_classes]: one anchor; with ``box``, a person-sized box (class 0, score 0.9) in the middle of
    the input, else one below every threshold (objectness 0), so decoding and NMS find nothing."""
    row = np.zeros((1, 1, 5 + num_classes), np.float32)
    row[0, 0, :4] = (input_size / 2, input_size / 2, input_size / 8, input_size / 4)
    if box:
        row[0, 0, 4] = 0.9
        row[0, 0, 5] = 1.0
    return row


def register_null_detector(registry: ModelRegistry, work_dir: Path, input_size: int = 32, box: bool = True,
                           num_classes: int = NULL_DETECTOR_CLASSES, **manifest_fields: Any) -> ModelManifest:
    """Build and register a near-zero-cost detector: yolov5 format ([N, 1, 5 + num_classes]), square
    ``input_size`` input, the same single row (``null_detector_output``) for every image whatever its pixels.

    The worker runs its whole per-frame path on it (letterbox into the batch, decode, NMS, box mapping, records)
    while the model itself costs microseconds: what is left is the worker's own ceiling. ``manifest_fields``
    override the registration (default name ``null-detector``, version 1.0.0)."""
    path = write_tiled_model(work_dir / "null-detector.onnx", null_detector_output(input_size, num_classes, box),
                             (input_size, input_size), name=NULL_DETECTOR_NAME)
    fields: dict[str, Any] = {
        "name": NULL_DETECTOR_NAME,
        "version": "1.0.0",
        "format": "yolov5",
        "input_width": input_size,
        "input_height": input_size,
        "class_names": ["person", *(f"class{i:02d}" for i in range(1, num_classes))],
        "source": {"kind": "models.tiny_graphs.register_null_detector", "box": box},
    }
    return registry.register(path, **(fields | manifest_fields))
