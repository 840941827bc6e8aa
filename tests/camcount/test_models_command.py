"""``camcount models list``: one line per registered version, with its aliases and, where recorded, its license."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from camcount.commands.models import cmd_models
from foundation.settings import Settings
from models.registry import ModelRegistry
from tests.onnx_models import model_fields, write_constant_model

INPUT = 64


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", model={"registry": str(tmp_path / "registry")})


def test_list_shows_a_recorded_license_and_nothing_where_none_is(settings: Settings, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    onnx = write_constant_model(tmp_path / "toy.onnx", np.zeros((1, 6, 7), np.float32), (INPUT, INPUT))
    registry = ModelRegistry(Path(settings.model.registry))
    registry.register(onnx, **model_fields("toy", INPUT, ["person", "car"]))
    registry.register(onnx, **model_fields("toy", INPUT, ["person", "car"], version="2.0.0", license="AGPL-3.0"))
    registry.promote("toy", "1.0.0")

    assert cmd_models(settings, argparse.Namespace(action="list")) == 0

    first, second = capsys.readouterr().out.splitlines()
    assert first.startswith("toy@1.0.0 ") and first.endswith("[production]") and "license" not in first
    assert second.startswith("toy@2.0.0 ") and second.endswith("  license AGPL-3.0")
