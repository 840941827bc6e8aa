"""An A/B experiment on the real stack: sticky per-camera variants, each frame served by its variant's model."""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter

import pytest
import yaml

from experiments.assignment import assign
from experiments.config import load_experiment
from models.registry import ModelRegistry
from tests.pipeline import CamcountProcesses, consume_records, footage_path

pytestmark = [pytest.mark.slow, pytest.mark.integration]

CAMERAS = 6
FRAMES = 15


@pytest.fixture
def two_version_registry(model_registry, tmp_path):
    root = tmp_path / "registry"
    shutil.copytree(model_registry, root)
    registry = ModelRegistry(root)
    current = registry.resolve("yolov3-tiny@production")
    fields = current.manifest.model_dump(exclude={"version", "sha256", "created_at"})
    registry.register(current.path, **{**fields, "version": "9.0.0"})
    return root, current.manifest.version


def test_every_frame_is_served_by_its_cameras_variant_and_clickhouse_matches_what_was_sent(
    pipeline_settings, two_version_registry, clickhouse_client, tmp_path
):
    root, control_version = two_version_registry
    settings = pipeline_settings(partitions=2)
    settings = settings.model_copy(update={"model": settings.model.model_copy(update={"registry": str(root)})})
    definition = {"name": f"ab-{tmp_path.name[-6:].replace('_', '-')}", "salt": "fixed-salt",
                  "variants": [{"name": "control", "model": f"yolov3-tiny@{control_version}"},
                               {"name": "candidate", "model": "yolov3-tiny@9.0.0", "confidence_threshold": 0.3}],
                  "min_samples_per_variant": 10}
    experiment_file = tmp_path / "experiment.yaml"
    experiment_file.write_text(yaml.safe_dump(definition))
    experiment = load_experiment(definition)
    cameras = [f"ab-cam-{i}" for i in range(CAMERAS)]
    expected_variant = {camera: assign(experiment, camera).name for camera in cameras}
    assert set(expected_variant.values()) == {"control", "candidate"}, "the salt must split these cameras"
    version_of = {"control": control_version, "candidate": "9.0.0"}
    processes = CamcountProcesses(settings, tmp_path)
    try:
        started = processes.run("ab", "start", str(experiment_file))
        assert started.returncode == 0, started.stderr
        processes.start("infer", "infer")
        processes.start("count", "count")
        for camera in cameras:
            processes.start(f"ingest-{camera}", "ingest", "--camera-id", camera, "--source", str(footage_path()),
                            "--fps", "0", "--max-frames", str(FRAMES))
        records = consume_records(settings, settings.kafka.detections_topic,
                                  lambda rs: len(rs) >= CAMERAS * FRAMES, timeout_s=180)
        client = clickhouse_client(settings)
        deadline = time.monotonic() + 30
        logged: list = []
        while time.monotonic() < deadline and sum(n for _, _, n in logged) < CAMERAS * FRAMES:
            logged = client.execute("SELECT variant, model_version, count() FROM inference_log FINAL "
                                    "WHERE experiment = %(e)s GROUP BY variant, model_version",
                                    {"e": definition["name"]})
            time.sleep(0.5)
        report = processes.run("ab", "report", definition["name"], "--json")
    finally:
        processes.run("ab", "stop", definition["name"])
        processes.stop_all()
    assert len(records) == CAMERAS * FRAMES
    for record in records:
        variant = expected_variant[record["camera_id"]]
        assert (record["experiment"], record["variant"], record["model_version"]) == (
            definition["name"], variant, version_of[variant]), record["camera_id"]
    sent = Counter(expected_variant[c] for c in cameras for _ in range(FRAMES))
    assert {(variant, version): n for variant, version, n in logged} == {
        (variant, version_of[variant]): n for variant, n in sent.items()}
    assert report.returncode == 0, report.stderr
    frames_in_report = {v["variant"]: v["frames"] for v in json.loads(report.stdout)["variants"]}
    assert frames_in_report == dict(sent)
