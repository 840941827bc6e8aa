"""Tiny hand-built ONNX detectors for the model tests, and the manifest fields to register them with.

Outputs use the yolov5 layout: rows of ``cx, cy, w, h, objectness, class probs...`` per anchor.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# One box at (16, 16), 8 x 8 px, objectness 1, class probability 1: inside a 32 x 32 input.
FIXED_BOX = np.array([[[16, 16, 8, 8, 1, 1]]], np.float32)


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


def model_fields(name: str, input_size: int, class_names: list[str], **overrides: Any) -> dict[str, Any]:
    """Registration fields of a yolov5-format test model, version 1.0.0, on a square input."""
    return {
        "name": name,
        "version": "1.0.0",
        "format": "yolov5",
        "input_width": input_size,
        "input_height": input_size,
        "class_names": class_names,
        "source": {"kind": "test"},
    } | overrides
