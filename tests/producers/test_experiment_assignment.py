"""The ingestor's view of the active experiment: it never blocks or crashes the publish path."""

from __future__ import annotations

import socket
import time

import pybreaker
import pytest
import redis

from experiments.config import Experiment
from foundation.settings import Settings
from producers.experiment_assignment import ExperimentAssigner
from sinks.experiment_store import REDIS_TIMEOUT_S, ExperimentStore


class _DictRedis:
    """Just enough of redis.Redis for ExperimentStore.active(): GET from a dict."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        return self.values.get(key)


def _started(store: ExperimentStore, client: _DictRedis, name: str) -> None:
    experiment = Experiment.model_validate({
        "name": name, "variants": [{"name": "a", "model": "yolo@1.0.0"}, {"name": "b", "model": "yolo@2.0.0"}],
    })
    client.values[f"{store.prefix}:experiment:active"] = name
    client.values[f"{store.prefix}:experiment:{name}"] = experiment.model_dump_json()


def test_a_corrupt_stored_experiment_keeps_the_previous_assignment(caplog):
    client = _DictRedis()
    store = ExperimentStore(client, prefix="t")  # type: ignore[arg-type]
    _started(store, client, "fast-model")
    assigner = ExperimentAssigner(store, refresh_s=0)
    before = assigner("cam-1", 0)
    assert before[0] == "fast-model"
    client.values["t:experiment:fast-model"] = '{"name": "fast-model", "variants": ['
    assert assigner("cam-1", 0) == before
    assert "unreadable" in caplog.text


def test_the_store_ingestors_use_gives_up_on_a_redis_that_does_not_answer():
    with socket.create_server(("127.0.0.1", 0)) as silent:
        settings = Settings(redis={"url": f"redis://127.0.0.1:{silent.getsockname()[1]}/0"})
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            ExperimentStore.for_settings(settings).active()
    assert time.monotonic() - started < REDIS_TIMEOUT_S + 2


class _FlakyStore:
    """A store whose Redis answers ``answers`` times, then is away; counts the lookups that reach it."""

    def __init__(self, store: ExperimentStore, answers: int) -> None:
        self._store, self._answers, self.lookups = store, answers, 0

    def active(self):
        self.lookups += 1
        if self.lookups > self._answers:
            raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        return self._store.active()


def test_with_redis_away_frames_keep_the_last_known_assignment():
    client = _DictRedis()
    store = ExperimentStore(client, prefix="t")  # type: ignore[arg-type]
    _started(store, client, "fast-model")
    assigner = ExperimentAssigner(_FlakyStore(store, answers=1), refresh_s=0)  # type: ignore[arg-type]
    before = assigner("cam-1", 0)

    assert before[0] == "fast-model"
    assert [assigner("cam-1", 0) for _ in range(3)] == [before] * 3


def test_once_its_breaker_opens_lookups_no_longer_reach_an_absent_redis():
    client = _DictRedis()
    store = ExperimentStore(client, prefix="t")  # type: ignore[arg-type]
    flaky = _FlakyStore(store, answers=0)
    assigner = ExperimentAssigner(flaky, refresh_s=0,  # type: ignore[arg-type]
                                  breaker=pybreaker.CircuitBreaker(fail_max=2, reset_timeout=60))
    for _ in range(10):
        assigner("cam-1", 0)

    assert flaky.lookups == 2


class _HungStore:
    """A store whose Redis stops answering after the first lookup: every later lookup hangs until released."""

    def __init__(self, store: ExperimentStore) -> None:
        import threading

        self._store, self.lookups, self.release = store, 0, threading.Event()

    def active(self):
        self.lookups += 1
        if self.lookups > 1:
            self.release.wait(10)
            raise redis.TimeoutError("Timeout reading from socket")
        return self._store.active()


def test_in_the_background_a_redis_that_stops_answering_never_holds_up_a_frame():
    client = _DictRedis()
    store = ExperimentStore(client, prefix="t")  # type: ignore[arg-type]
    _started(store, client, "fast-model")
    hung = _HungStore(store)
    assigner = ExperimentAssigner(hung, refresh_s=0, background=True)  # type: ignore[arg-type]
    first = assigner("cam-1", 0)  # the first lookup is made on the spot
    try:
        started = time.monotonic()
        later = [assigner("cam-1", 0) for _ in range(50)]
        waited = time.monotonic() - started
        deadline = time.monotonic() + 5
        while hung.lookups < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        hung.release.set()

    assert first[0] == "fast-model" and later == [first] * 50
    assert waited < 1.0, f"frames waited {waited:.1f} s for a Redis that does not answer"
    assert hung.lookups == 2, "one background lookup at a time"
