"""Experiment state in Redis, against the real Redis of the session stack."""

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
import redis

from foundation.settings import Settings
from sinks.experiment_store import (
    ExperimentAlreadyActive,
    ExperimentExists,
    ExperimentNotActive,
    ExperimentNotFound,
    ExperimentStore,
    ExperimentStoreError,
    ExperimentStoreUnavailable,
)
from tests.experiment_builders import START
from tests.experiment_builders import fast_model_experiment as experiment
from tests.services import free_ports

pytestmark = pytest.mark.integration



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


def test_a_store_on_a_closed_port_says_redis_cannot_be_reached_and_names_its_address():
    port = free_ports(1)[0]  # nothing listens there
    store = ExperimentStore.for_settings(Settings(redis={"url": f"redis://:secret@127.0.0.1:{port}/0"}))
    with pytest.raises(ExperimentStoreUnavailable, match=rf"127\.0\.0\.1:{port}") as raised:
        store.active()
    assert raised.value.code == "SYS_003"
    assert "secret" not in raised.value.one_line()
    assert "camcount stack up" in raised.value.one_line() and "REDIS_URL" in raised.value.one_line()
    assert isinstance(raised.value, redis.ConnectionError)  # callers catching redis errors keep catching it
