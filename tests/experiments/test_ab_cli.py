"""`camcount ab guard` and `camcount ab promote` against experiment data in the real ClickHouse and Redis."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import numpy as np
import pytest
import yaml

from experiments.assignment import assign
from experiments.config import load_experiment
from models.registry import ModelRegistry
from sinks.clickhouse import INFERENCE_COLUMNS
from tests.pipeline import CamcountProcesses

pytestmark = [pytest.mark.integration]


def _setup(isolated_settings, two_version_registry, tmp_path, **extra):
    root, control_version = two_version_registry
    settings = isolated_settings()
    settings = settings.model_copy(update={"model": settings.model.model_copy(update={"registry": str(root)})})
    definition = {"name": f"cli-{tmp_path.name[-6:].replace('_', '-')}",
                  "variants": [{"name": "control", "model": f"yolov4-tiny@{control_version}"},
                               {"name": "fast", "model": "yolov4-tiny@9.0.0"}],
                  "min_samples_per_variant": 50, **extra}
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(definition))
    processes = CamcountProcesses(settings, tmp_path)
    assert processes.run("ab", "start", str(path)).returncode == 0
    return settings, load_experiment(definition), processes


def _log_frames(client, experiment, infer_ms: dict[str, float], e2e_ms: dict[str, float], per_camera: int = 30):
    """Inserts inference_log rows as the sink would, for 40 cameras split by the experiment's assignment."""
    rng = np.random.default_rng(7)
    now_ms = int(time.time() * 1000)
    rows = []
    for camera in (f"cam-{i}" for i in range(40)):
        variant = assign(experiment, camera).name
        for seq in range(per_camera):
            ts = now_ms - (per_camera - seq) * 1000
            rows.append((camera, seq, datetime.fromtimestamp(ts / 1000, UTC).replace(microsecond=0, tzinfo=None), ts,
                         "yolov4-tiny", "x", variant, experiment.name, "ok", 5, 0.6,
                         float(infer_ms[variant] + rng.normal(0, 1)), float(e2e_ms[variant] + rng.normal(0, 5)), 0))
    client.execute(f"INSERT INTO inference_log ({', '.join(INFERENCE_COLUMNS)}) VALUES", rows)


def test_guard_stops_an_experiment_whose_candidate_breaches_the_latency_guardrail(
    isolated_settings, two_version_registry, clickhouse_client, tmp_path
):
    settings, experiment, processes = _setup(
        isolated_settings, two_version_registry, tmp_path,
        guardrails={"max_p95_latency_ms": 500, "breach_seconds": 1, "window_seconds": 60, "min_window_frames": 10})
    _log_frames(clickhouse_client(settings), experiment, {"control": 30, "fast": 20}, {"control": 200, "fast": 900})
    guard = processes.start("guard", "ab", "guard", "--interval", "0.5")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "no experiment running" not in processes.run("ab", "status").stdout:
            time.sleep(0.5)
        assert guard.poll() is None, processes.log("guard")
    finally:
        processes.stop_all()
    status = processes.run("ab", "status").stdout
    assert "no experiment running" in status
    assert "guardrail: variant fast p95_latency_ms" in status


def test_promote_moves_the_winning_variants_model_to_production(
    isolated_settings, two_version_registry, clickhouse_client, tmp_path
):
    settings, experiment, processes = _setup(isolated_settings, two_version_registry, tmp_path)
    _log_frames(clickhouse_client(settings), experiment, {"control": 30, "fast": 20}, {"control": 200, "fast": 190})
    promoted = processes.run("ab", "promote", experiment.name)
    assert promoted.returncode == 0, promoted.stderr
    assert ModelRegistry(two_version_registry[0]).aliases("yolov4-tiny")["production"] == "9.0.0"
    processes.run("ab", "stop", experiment.name)
