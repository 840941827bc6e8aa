"""Experiment state in Redis and samples from ClickHouse, against the real services of the session stack."""

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis

from experiments.assignment import assign
from experiments.config import Experiment
from experiments.store import (
    ExperimentAlreadyActive,
    ExperimentExists,
    ExperimentNotActive,
    ExperimentNotFound,
    ExperimentStore,
    ExperimentStoreError,
    load_samples,
)
from sinks.clickhouse import CROSSING_COLUMNS, INFERENCE_COLUMNS

pytestmark = pytest.mark.integration

START = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def experiment(name: str = "fast-model") -> Experiment:
    return Experiment.model_validate({
        "name": name,
        "variants": [{"name": "a", "model": "yolo@1.0.0"}, {"name": "b", "model": "yolo@2.0.0"}],
    })


class Clock:
    """A clock that advances one minute per reading."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


@pytest.fixture
def store(redis_client: redis.Redis) -> Iterator[ExperimentStore]:
    prefix = f"test-store-{uuid.uuid4().hex[:8]}"
    yield ExperimentStore(redis_client, clock=Clock(), prefix=prefix)
    leftovers = redis_client.keys(f"{prefix}:*")
    if leftovers:
        redis_client.delete(*leftovers)


def test_started_experiment_is_active_and_running(store):
    store.start(experiment())
    active = store.active()
    assert (active.name, active.status, active.started_at) == ("fast-model", "running", START + timedelta(minutes=1))


def test_no_experiment_is_active_in_an_empty_store(store):
    assert store.active() is None


def test_a_second_experiment_is_refused_while_one_runs(store):
    store.start(experiment())
    with pytest.raises(ExperimentAlreadyActive, match="'fast-model' is running; stop it"):
        store.start(experiment("second"))


def test_stopped_experiment_keeps_its_state_and_reason(store):
    store.start(experiment())
    store.stop("fast-model", "guardrail: variant b error_rate")
    stopped = store.get("fast-model")
    assert store.active() is None
    assert (stopped.status, stopped.stop_reason) == ("stopped", "guardrail: variant b error_rate")
    assert stopped.stopped_at > stopped.started_at


def test_a_name_is_never_reused(store):
    store.start(experiment())
    store.stop("fast-model", "done")
    with pytest.raises(ExperimentExists, match="new name"):
        store.start(experiment())


def test_only_the_active_experiment_can_be_stopped(store):
    store.start(experiment())
    with pytest.raises(ExperimentNotActive, match="'fast-model' is running"):
        store.stop("second", "wrong one")


def test_unknown_experiment_is_not_found(store):
    with pytest.raises(ExperimentNotFound, match="'second'"):
        store.get("second")


def test_history_lists_starts_and_stops_in_order(store):
    store.start(experiment())
    store.stop("fast-model", "done")
    store.start(experiment("second"))
    assert [(h.event, h.experiment, h.reason) for h in store.history()] == [
        ("started", "fast-model", None), ("stopped", "fast-model", "done"), ("started", "second", None)
    ]


def test_the_reserved_name_active_is_refused(store):
    with pytest.raises(ExperimentStoreError, match="reserved"):
        store.start(experiment("active"))


def inference(camera_id, seq, variant, *, status="ok", infer_ms=20.0, detections=2, experiment_name="fast-model"):
    ts = int(START.timestamp() * 1000) + seq * 1000
    return (camera_id, seq, datetime.fromtimestamp(ts / 1000, UTC), ts, "yolo", "1.0.0", variant, experiment_name,
            status, detections, 0.8, infer_ms, infer_ms + 5)


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
