"""``camcount bench agreement`` counts the same random lines with several real (tiny) ONNX models and scores each
candidate's crossings against the reference's."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from camcount.agreement import run_agreement
from foundation.errors import UsageError
from foundation.settings import Settings
from models.loading import open_model_registry
from models.tiny_graphs import null_detector_output, register_null_detector, write_mean_model
from tests.services import run_camcount

WALKER = "walker@1.0.0"


def register_walker(settings: Settings, work_dir: Path, version: str) -> None:
    """A yolov5-format model on 32 x 32 input with one person box whose centre x grows with the image's mean
    brightness: on footage that brightens frame by frame, a person walking left to right."""
    base = null_detector_output(32)
    weight = np.zeros_like(base)
    base[0, 0, 0], weight[0, 0, 0] = -12.0, 60.0
    path = write_mean_model(work_dir / f"walker-{version}.onnx", base, weight, input_hw=(32, 32), name="walker")
    open_model_registry(settings).register(
        path, name="walker", version=version, format="yolov5", input_width=32, input_height=32,
        class_names=["person", *(f"class{i:02d}" for i in range(1, base.shape[2] - 5))],
        source={"kind": "tests.camcount.test_agreement_bench"})


@pytest.fixture
def settings(tmp_path, monkeypatch) -> Settings:
    monkeypatch.setenv("CAMCOUNT_HOME", str(tmp_path / "home"))
    settings = Settings()
    register_walker(settings, tmp_path, "1.0.0")
    register_walker(settings, tmp_path, "2.0.0")  # the same weights under another version
    register_null_detector(open_model_registry(settings), tmp_path)  # one box that never moves
    return settings


@pytest.fixture
def footage(tmp_path) -> Path:
    clip = tmp_path / "clip"
    clip.mkdir()
    for i in range(24):
        cv2.imwrite(str(clip / f"{i:03d}.png"), np.full((240, 320, 3), 30 + 9 * i, np.uint8))
    return clip


def test_a_candidate_with_the_reference_s_weights_agrees_fully_and_a_still_one_not_at_all(settings, footage):
    report = run_agreement(settings, [WALKER, "walker@2.0.0", "null-detector@1.0.0"], [footage], lines=40,
                           batch_size=4)

    (result,) = report["footages"]
    same, still = result["candidates"]
    assert result["reference_crossings"] > 0
    assert (same["matched"], same["only_reference"], same["only_candidate"]) == (result["reference_crossings"], 0, 0)
    assert same["precision"] == same["recall"] == 1.0 and same["most_different"] == []
    assert (still["matched"], still["only_reference"], still["crossings"]) == (0, result["reference_crossings"], 0)
    assert still["recall"] == 0.0
    assert still["most_different"][0]["only_reference"] >= 1


def test_agreement_needs_a_candidate(settings, footage):
    with pytest.raises(UsageError, match="at least one candidate"):
        run_agreement(settings, [WALKER], [footage])


def test_a_missing_footage_is_named(settings, tmp_path):
    with pytest.raises(UsageError, match="missing"):
        run_agreement(settings, [WALKER, "walker@2.0.0"], [tmp_path / "nowhere.avi"])


def test_bench_agreement_prints_each_candidate_against_the_reference(settings, footage):
    args = ("bench", "agreement", "--model", WALKER, "--model", "null-detector@1.0.0", "--footage", str(footage),
            "--lines", "40", "--batch", "4")
    env = {"CAMCOUNT_HOME": str(settings.home)}

    as_json = run_camcount(*args, "--json", env=env)
    as_text = run_camcount(*args, env=env)

    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["reference"] == WALKER and report["lines"] == 40 and report["seed"] == 0
    assert as_text.returncode == 0, as_text.stderr
    assert f"reference {WALKER}; 40 random lines (seed 0)" in as_text.stdout
    assert "null-detector@1.0.0: 0 crossings" in as_text.stdout
