"""Bad input and bad config get a clear message and a non-zero exit, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.pipeline import REPO, footage_path
from tests.services import free_ports


def _camcount(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CAMCOUNT_")}
    return subprocess.run([sys.executable, "-m", "camcount.cli", *args], capture_output=True, text=True,
                          env={**base, **(env or {})}, cwd=REPO, timeout=timeout)


def test_ingest_of_a_missing_video_file_says_so():
    result = _camcount("ingest", "--camera-id", "c1", "--source", "/nonexistent/cam.mp4")
    assert result.returncode == 2
    assert "video source not found: /nonexistent/cam.mp4" in result.stderr
    assert "Traceback" not in result.stderr


def test_ingest_to_an_unreachable_broker_says_how_to_fix_it():
    port = free_ports(1)[0]
    result = _camcount("ingest", "--camera-id", "c1", "--source", str(footage_path()),
                       env={"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"})
    assert result.returncode == 2
    assert f"127.0.0.1:{port} not reachable" in result.stderr
    assert "KAFKA_BOOTSTRAP_SERVERS" in result.stderr


def test_a_camera_config_with_an_invalid_line_names_the_field(tmp_path):
    config = tmp_path / "cameras.yaml"
    config.write_text("cameras:\n  gate:\n    lines:\n      - {name: L1, start: [10, 10], end: [10, 10]}\n")
    result = _camcount("analyze", str(footage_path()), "--config", str(config), "--camera-id", "gate")
    assert result.returncode == 2
    assert "cameras.gate.lines[0].end" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_settings_name_the_field():
    result = _camcount("stack", "status", env={"CAMCOUNT_INFERENCE__MAX_BATCH": "-3"})
    assert result.returncode == 2
    assert "inference.max_batch" in result.stderr


@pytest.mark.parametrize("ref", ["no-such-model@production", "yolov3-tiny@9.9.9"])
def test_an_unknown_model_reference_is_a_clear_error(ref, model_registry):
    result = _camcount("models", "show", ref, env={"CAMCOUNT_MODEL__REGISTRY": model_registry})
    assert result.returncode == 2
    assert "MODEL_001" in result.stderr
