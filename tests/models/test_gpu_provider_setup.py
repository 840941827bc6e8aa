"""GPU provider set-up that can be checked without a GPU: TensorRT's optimisation profile and engine cache names, CUDA
library preloading.

No GPU runs here, so the profile tests check option strings against the format ONNX Runtime's TensorRT provider
documents (``name:NxCxHxW``, comma-separated per input), read from the model file itself; the preload test stands
in ONNX Runtime's own loader, which needs the NVIDIA wheels.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from models import runtime
from models.manifest import ModelManifest
from models.runtime import tensorrt_batch_profile, tensorrt_engine_cache_prefix
from models.serving_graph import SERVING_INPUT, serving_graph
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


def test_model_with_dynamic_image_size_is_left_to_tensorrt_without_a_size(tmp_path: Path) -> None:
    path = write_mean_model(tmp_path / "m.onnx", BASE, input_hw=("H", "W"))  # type: ignore[arg-type]

    assert tensorrt_batch_profile(path, max_batch=8) == {}


def test_model_with_dynamic_image_size_is_profiled_at_the_size_camcount_feeds(tmp_path: Path) -> None:
    path = write_mean_model(tmp_path / "m.onnx", BASE, input_hw=("H", "W"))  # type: ignore[arg-type]

    profile = tensorrt_batch_profile(path, max_batch=8, image_size=(480, 640))

    assert profile["trt_profile_min_shapes"] == "images:1x3x480x640"
    assert profile["trt_profile_max_shapes"] == "images:8x3x480x640"


def test_an_unreadable_model_file_gets_no_profile_so_the_session_can_report_it(tmp_path: Path) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"not an onnx model")

    assert tensorrt_batch_profile(path, max_batch=8) == {}


def test_cuda_wheels_are_preloaded_once_with_onnx_runtimes_output_sent_to_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    (tmp_path / "nvidia").mkdir()  # NVIDIA's wheels install an ``nvidia`` namespace package
    monkeypatch.syspath_prepend(str(tmp_path))
    calls: list[int] = []
    monkeypatch.setattr(ort, "preload_dlls", lambda: (calls.append(1), print("Failed to load libcurand.so.10")))
    runtime.preload_cuda_wheels.cache_clear()
    try:
        with caplog.at_level(logging.DEBUG, logger="models.runtime"):
            assert runtime.preload_cuda_wheels() and runtime.preload_cuda_wheels()
    finally:
        runtime.preload_cuda_wheels.cache_clear()

    assert calls == [1]
    assert capsys.readouterr().out == ""
    assert "libcurand.so.10" in caplog.text


def test_two_versions_of_one_architecture_never_share_a_cached_tensorrt_engine() -> None:
    first = tensorrt_engine_cache_prefix("a" * 64)["trt_engine_cache_prefix"]
    retrained = tensorrt_engine_cache_prefix("b" * 64)["trt_engine_cache_prefix"]

    assert first != retrained
    assert first == tensorrt_engine_cache_prefix("a" * 64)["trt_engine_cache_prefix"]  # a restart finds its engine
    assert tensorrt_engine_cache_prefix(None) == {}


def test_the_serving_graph_is_profiled_at_its_uint8_input(tmp_path: Path) -> None:
    path = write_mean_model(tmp_path / "m.onnx", BASE, input_hw=(608, 416))
    manifest = ModelManifest(name="toy", version="1.0.0", format="yolov5", input_width=416, input_height=608,
                             class_names=["person"], sha256="0" * 64, created_at=datetime(2025, 1, 1, tzinfo=UTC))

    profile = tensorrt_batch_profile(serving_graph(path, manifest), max_batch=8)

    assert profile["trt_profile_min_shapes"] == f"{SERVING_INPUT}:1x608x416x3"
    assert profile["trt_profile_max_shapes"] == f"{SERVING_INPUT}:8x608x416x3"
