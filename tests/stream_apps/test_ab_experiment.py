"""An A/B experiment on the real stack: sticky per-camera variants, each frame served by its variant's model,
and shadow runs that compare the candidate with the control on identical frames without touching counts."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest
import yaml

from experiments.assignment import assign
from experiments.config import load_experiment
from tests.pipeline import CamcountProcesses, consume_records, footage_path, frame_records

pytestmark = [pytest.mark.slow, pytest.mark.integration]

CAMERAS = 6
FRAMES = 15


def _run_experiment(settings, tmp_path, definition: dict, clickhouse_client, until_rows: str):
    """Starts the experiment, streams CAMERAS x FRAMES frames, waits for ClickHouse; returns what came out (the
    detections records of the frames, once every camera's end marker came out too)."""
    experiment_file = tmp_path / "experiment.yaml"
    experiment_file.write_text(yaml.safe_dump(definition))
    cameras = [f"ab-cam-{i}" for i in range(CAMERAS)]
    processes = CamcountProcesses(settings, tmp_path)
    client = clickhouse_client(settings)
    try:
        started = processes.run("ab", "start", str(experiment_file))
        assert started.returncode == 0, started.stderr
        processes.start("infer", "infer")
        processes.start("count", "count")
        for camera in cameras:
            processes.start(f"ingest-{camera}", "ingest", "--camera-id", camera, "--source", str(footage_path()),
                            "--fps", "0", "--first-seq", "0", "--max-frames", str(FRAMES))
        records = consume_records(settings, settings.kafka.detections_topic,  # each camera's frames and end marker
                                  lambda rs: len(rs) >= CAMERAS * (FRAMES + 1), timeout_s=180)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not client.execute(until_rows, {"e": definition["name"]})[0][0]:
            time.sleep(0.5)
        report = processes.run("ab", "report", definition["name"], "--json")
    finally:
        processes.run("ab", "stop", definition["name"])
        processes.stop_all()
    assert report.returncode == 0, report.stderr
    assert sorted(r["camera_id"] for r in records if r["status"] == "END") == cameras
    return cameras, frame_records(records), client, json.loads(report.stdout)


def _definition(tmp_path, control_version: str, **extra) -> dict:
    return {"name": f"ab-{tmp_path.name[-6:].replace('_', '-')}", "salt": "fixed-salt",
            "variants": [{"name": "control", "model": f"yolov4-tiny@{control_version}"},
                         {"name": "candidate", "model": "yolov4-tiny@9.0.0", "confidence_threshold": 0.3}],
            "min_samples_per_variant": 10, **extra}


def _with_registry(settings, root):
    return settings.model_copy(update={"model": settings.model.model_copy(update={"registry": str(root)})})


def test_every_frame_is_served_by_its_cameras_variant_and_clickhouse_matches_what_was_sent(
    pipeline_settings, two_version_registry, clickhouse_client, tmp_path
):
    root, control_version = two_version_registry
    definition = _definition(tmp_path, control_version)
    experiment = load_experiment(definition)
    cameras, records, client, report = _run_experiment(
        _with_registry(pipeline_settings(partitions=2), root), tmp_path, definition, clickhouse_client,
        f"SELECT count() >= {CAMERAS * FRAMES} FROM inference_log FINAL WHERE experiment = %(e)s")
    expected_variant = {camera: assign(experiment, camera).name for camera in cameras}
    assert set(expected_variant.values()) == {"control", "candidate"}, "the salt must split these cameras"
    version_of = {"control": control_version, "candidate": "9.0.0"}
    assert len(records) == CAMERAS * FRAMES
    for record in records:
        variant = expected_variant[record["camera_id"]]
        assert (record["experiment"], record["variant"], record["model_version"]) == (
            definition["name"], variant, version_of[variant]), record["camera_id"]
    logged = client.execute("SELECT variant, model_version, count() FROM inference_log FINAL "
                            "WHERE experiment = %(e)s GROUP BY variant, model_version", {"e": definition["name"]})
    sent = Counter(expected_variant[c] for c in cameras for _ in range(FRAMES))
    assert {(variant, version): n for variant, version, n in logged} == {
        (variant, version_of[variant]): n for variant, n in sent.items()}
    assert {v["variant"]: v["frames"] for v in report["variants"]} == dict(sent)


def test_shadow_runs_pair_control_frames_with_the_candidate_without_reaching_counting(
    pipeline_settings, two_version_registry, clickhouse_client, tmp_path
):
    root, control_version = two_version_registry
    definition = _definition(tmp_path, control_version,
                             shadow={"enabled": True, "candidate": "candidate", "sample_rate": 1.0})
    definition["variants"][1].pop("confidence_threshold")  # same weights, same thresholds: boxes must agree
    experiment = load_experiment(definition)
    cameras, records, client, report = _run_experiment(
        _with_registry(pipeline_settings(partitions=2), root), tmp_path, definition, clickhouse_client,
        "SELECT count() > 0 FROM shadow_pairs FINAL WHERE experiment = %(e)s")
    control_frames = sum(FRAMES for c in cameras if assign(experiment, c).name == "control")
    assert Counter((r["camera_id"], r["frame_seq"]) for r in records).most_common(1)[0][1] == 1
    time.sleep(2)  # the sink flushes every second
    pairs = client.execute("SELECT count(), sum(control_detections), sum(candidate_detections), "
                           "sum(matched_boxes) FROM shadow_pairs FINAL WHERE experiment = %(e)s",
                           {"e": definition["name"]})[0]
    assert pairs[0] == control_frames
    assert pairs[1] == pairs[2] == pairs[3] > 0, "identical models must agree box for box"
    models = client.execute("SELECT DISTINCT control_model_name, control_model_version, candidate_model_name, "
                            "candidate_model_version FROM shadow_pairs FINAL WHERE experiment = %(e)s",
                            {"e": definition["name"]})
    assert models == [("yolov4-tiny", control_version, "yolov4-tiny", "9.0.0")]
    assert report["shadow"]["box_agreement"] == pytest.approx(1.0)
