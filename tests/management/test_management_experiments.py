"""Experiment actions (management.experiments) against the real Redis store, registry and ClickHouse audit log."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from experiments.config import Experiment
from management import experiments as manage
from models.errors import ModelNotFound
from models.registry import ModelRegistry
from sinks.audit import AuditLog
from sinks.experiment_store import ExperimentNotActive, ExperimentStore
from tests.management.conftest import ALICE, audit_rows, state

pytestmark = pytest.mark.integration


@pytest.fixture
def store(redis_client: redis.Redis) -> Iterator[ExperimentStore]:
    prefix = f"test-manage-{uuid.uuid4().hex[:8]}"
    yield ExperimentStore(redis_client, prefix=prefix)
    leftovers = redis_client.keys(f"{prefix}:*")
    if leftovers:
        redis_client.delete(*leftovers)


@pytest.fixture
def registry(two_version_registry: tuple[Path, str]) -> ModelRegistry:
    return ModelRegistry(two_version_registry[0])


def _experiment(production: str, candidate: str = "9.0.0", name: str = "int8-trial") -> Experiment:
    return Experiment.model_validate({"name": name, "variants": [
        {"name": "control", "model": f"yolov4-tiny@{production}"},
        {"name": "fast", "model": f"yolov4-tiny@{candidate}"}]})


def test_start_then_stop_write_one_row_each_with_the_experiment_state(
        store: ExperimentStore, registry: ModelRegistry, audit: AuditLog,
        two_version_registry: tuple[Path, str]) -> None:
    manage.start(store, registry, audit, ALICE, _experiment(two_version_registry[1]))
    stopped = manage.stop(store, audit, ALICE, None, "enough data")

    assert stopped.status == "stopped" and store.active() is None
    start, stop = audit_rows(audit)
    assert (start.action, start.target, start.result) == ("experiment.start", "int8-trial", "ok")
    assert state(start.before) == {"active": None}
    assert state(start.after)["status"] == "running"
    assert (stop.action, stop.reason) == ("experiment.stop", "enough data")
    assert state(stop.before)["status"] == "running" and state(stop.after)["status"] == "stopped"


def test_a_start_naming_an_unregistered_model_is_refused_and_recorded(
        store: ExperimentStore, registry: ModelRegistry, audit: AuditLog,
        two_version_registry: tuple[Path, str]) -> None:
    with pytest.raises(ModelNotFound):
        manage.start(store, registry, audit, ALICE, _experiment(two_version_registry[1], candidate="8.8.8"))

    assert store.active() is None
    (row,) = audit_rows(audit)
    assert (row.action, row.result, row.error_code) == ("experiment.start", "error", "MODEL_001")


def test_stopping_an_experiment_that_is_not_running_is_recorded_as_an_error(store: ExperimentStore,
                                                                            audit: AuditLog) -> None:
    with pytest.raises(ExperimentNotActive):
        manage.stop(store, audit, ALICE, "never-ran", "because")

    (row,) = audit_rows(audit)
    assert (row.target, row.result, row.error_code, row.before) == ("never-ran", "error", "EXP_005", "")
