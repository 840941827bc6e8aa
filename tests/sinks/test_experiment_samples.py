"""Experiment samples from ClickHouse, against the real ClickHouse of the session stack."""

from datetime import UTC, datetime

import pytest

from experiments.assignment import assign
from experiments.config import Experiment
from sinks.clickhouse import CROSSING_COLUMNS, INFERENCE_COLUMNS
from sinks.experiment_samples import load_samples
from tests.experiment_builders import START
from tests.experiment_builders import fast_model_experiment as experiment

pytestmark = pytest.mark.integration



def inference(camera_id, seq, variant, *, status="ok", infer_ms=20.0, detections=2, experiment_name="fast-model"):
    ts = int(START.timestamp() * 1000) + seq * 1000
    return (camera_id, seq, datetime.fromtimestamp(ts / 1000, UTC), ts, "yolo", "1.0.0", variant, experiment_name,
            status, detections, 0.8, infer_ms, infer_ms + 5, 0)


def crossing(camera_id, seq, variant):
    ts = int(START.timestamp() * 1000) + seq * 1000
    return (f"{camera_id}-{seq}", camera_id, seq, datetime.fromtimestamp(ts / 1000, UTC), ts, "L1", "in", seq,
            "person", "yolo", "1.0.0", variant, "fast-model")


def cameras_of(definition: Experiment, variant: str, count: int) -> list[str]:
    return [c for c in (f"cam-{i}" for i in range(100)) if assign(definition, c).name == variant][:count]


def test_load_samples_reads_per_frame_arrays_and_camera_hour_counts(isolated_settings, clickhouse_client):
    client = clickhouse_client(isolated_settings())
    definition = experiment()
    cam_a, cam_b = cameras_of(definition, "a", 1)[0], cameras_of(definition, "b", 1)[0]
    rows = [inference(cam_a, seq, "a", infer_ms=10.0 + seq) for seq in range(4)]
    rows += [inference(cam_a, 4, "a", status="error"), inference(cam_a, 5, "a", status="skipped")]
    rows += [inference(cam_b, seq, "b", infer_ms=30.0) for seq in range(3)]
    rows += [inference(cam_b, 3, "b"), inference(cam_b, 3, "b")]  # a replayed frame: FINAL keeps one
    rows += [inference(cam_a, 0, "b"), inference(cam_a, 9, "a", experiment_name="other")]  # shadow, other exp.
    client.execute(f"INSERT INTO inference_log ({', '.join(INFERENCE_COLUMNS)}) VALUES", rows)
    client.execute(f"INSERT INTO crossing_events ({', '.join(CROSSING_COLUMNS)}) VALUES",
                   [crossing(cam_a, 1, "a"), crossing(cam_a, 2, "a"), crossing(cam_a, 2, "a")])

    samples = load_samples(client, definition)

    a, b = samples["a"], samples["b"]
    assert sorted(a.infer_ms[~a.error].tolist()) == [10.0, 11.0, 12.0, 13.0]
    assert (a.frames, a.errors, a.cameras) == (5, 1, 1)
    assert (b.frames, b.cameras) == (4, 1)
    assert (a.crossings_per_camera_hour.tolist(), b.crossings_per_camera_hour.tolist()) == ([2.0], [0.0])


def test_load_samples_gives_every_variant_even_without_data(isolated_settings, clickhouse_client):
    samples = load_samples(clickhouse_client(isolated_settings()), experiment())
    assert {name: s.frames for name, s in samples.items()} == {"a": 0, "b": 0}
