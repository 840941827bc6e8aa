"""Loading a registered model from settings: providers, and the refusal to run on CPU when a GPU is required."""

from __future__ import annotations

from pathlib import Path

import pytest

from foundation.settings import Settings
from models.errors import GpuUnavailable
from models.loading import load_registered_model
from models.registry import ModelRegistry
from models.runtime import CPU
from tests.onnx_models import write_fixed_box_model


@pytest.fixture
def registered(tmp_path: Path):
    registry = ModelRegistry(tmp_path / "registry")
    registry.register(write_fixed_box_model(tmp_path / "fixed.onnx"), name="fixed", version="1.0.0",
                      format="yolov5", input_width=32, input_height=32, class_names=["person"])
    return registry.resolve("fixed@1.0.0")


def _settings(tmp_path: Path, **model) -> Settings:
    return Settings(home=tmp_path / "home", model={"providers": [CPU], **model})


def test_a_model_loads_on_cpu_when_no_gpu_is_required(registered, tmp_path):
    assert load_registered_model(_settings(tmp_path), registered, max_batch=1).provider == CPU


def test_require_gpu_refuses_a_model_that_would_run_on_cpu_with_res_002(registered, tmp_path):
    with pytest.raises(GpuUnavailable) as raised:
        load_registered_model(_settings(tmp_path, require_gpu=True), registered, max_batch=1)
    assert (raised.value.code, raised.value.detail) == ("RES_002", "gpu-unavailable")
    assert "model.require_gpu" in str(raised.value)
