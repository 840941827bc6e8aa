"""Tiny hand-built ONNX detectors for the model tests, and the manifest fields to register them with.

The builders live in package code (``models.tiny_graphs``), shared with ``camcount bench ceiling``; this module
re-exports them under the names the tests use and adds the test registration fields.
Outputs use the yolov5 layout: rows of ``cx, cy, w, h, objectness, class probs...`` per anchor.
"""

from __future__ import annotations

from typing import Any

from models.tiny_graphs import (
    FIXED_BOX,
    images_input,
    make_model,
    write_constant_model,
    write_fixed_box_model,
    write_mean_model,
    write_tiled_model,
)

__all__ = ["FIXED_BOX", "images_input", "make_model", "model_fields", "write_constant_model", "write_fixed_box_model",
           "write_mean_model", "write_tiled_model"]


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
