"""The TensorRT optimisation profile: one engine for every batch size the dynamic batcher can form.

No GPU runs here, so these check the option strings against the format ONNX Runtime's TensorRT provider documents
(``name:NxCxHxW``, comma-separated per input), read from the model file itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.runtime import tensorrt_batch_profile
from tests.onnx_models import write_mean_model

BASE = np.zeros((1, 2, 6), np.float32)


def test_dynamic_batch_model_gets_a_profile_from_one_to_max_batch(tmp_path: Path) -> None:
    path = write_mean_model(tmp_path / "m.onnx", BASE, input_hw=(608, 416))

    assert tensorrt_batch_profile(path, max_batch=16) == {
        "trt_profile_min_shapes": "images:1x3x608x416",
        "trt_profile_opt_shapes": "images:16x3x608x416",
        "trt_profile_max_shapes": "images:16x3x608x416",
    }


def test_static_batch_model_needs_no_profile(tmp_path: Path) -> None:
    path = write_mean_model(tmp_path / "m.onnx", BASE, input_hw=(64, 64), batch=4, mean_shape=[4, 1, 1])

    assert tensorrt_batch_profile(path, max_batch=4) == {}


def test_model_with_dynamic_image_size_is_left_to_tensorrt(tmp_path: Path) -> None:
    path = write_mean_model(tmp_path / "m.onnx", BASE, input_hw=("H", "W"))  # type: ignore[arg-type]

    assert tensorrt_batch_profile(path, max_batch=8) == {}
