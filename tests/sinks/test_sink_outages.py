"""The ClickHouse sink through outages of its stores, on a private stack whose processes the tests pause: nothing
exits, nothing is lost, and every row and live total arrives once the store is back."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid

import pytest
import redis
from confluent_kafka import Consumer, Producer, TopicPartition

from foundation.clickhouse import clickhouse_client
from foundation.kafka import consumer_config, producer_config
from foundation.provision import provision
from schemas import CROSSING
from sinks.kafka_sink import ClickHouseSink
from sinks.redis_live import LiveCrossingTotals, line_key

pytestmark = [pytest.mark.integration, pytest.mark.slow]

START_MS = 1_700_000_000_000


def _crossings(settings, run: str, first: int, count: int) -> None:
    producer = Producer(producer_config(settings))
    for seq in range(first, first + count):
        record = {"event_id": f"{run}-{seq}", "camera_id": "cam", "frame_seq": seq, "capture_ts_ms": START_MS + seq,
                  "line": "L", "direction": "in", "track_id": seq, "class_name": "person", "model_name": "m",
                  "model_version": "1.0.0", "variant": "", "experiment": ""}
        producer.produce(settings.kafka.crossings_topic, key=b"cam", value=CROSSING.encode(record),
                         headers=CROSSING.headers())
    assert producer.flush(10) == 0


def _namespace(settings):
    """Topics and a database of this test's own, on the outage stack."""
    own = settings.namespaced(uuid.uuid4().hex[:8])
    provision(own, progress=lambda _: None)
    return own


def _pid(stack, name: str) -> int:
    return next(s.pid for s in stack.status() if s.name == name)


def _eventually(check, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


def _stored(settings, run: str) -> int:
    client = clickhouse_client(settings)
    try:
        return client.execute("SELECT count() FROM crossing_events FINAL WHERE event_id LIKE %(run)s",
                              {"run": f"{run}-%"})[0][0]
    except Exception:  # noqa: BLE001 - a paused server answers nothing: "not yet"
        return -1
    finally:
        client.disconnect()


class _RunningSink:
    def __init__(self, sink: ClickHouseSink) -> None:
        self.sink, self.failure = sink, None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.sink.run()
        except Exception as exc:  # noqa: BLE001 - handed to the test
            self.failure = exc

    def stop(self) -> None:
        self.sink.stop()
        self.thread.join(30)


def test_clickhouse_paused_mid_stream_loses_nothing_and_the_sink_does_not_stop(outage_stack):
    stack, settings = outage_stack
    settings = _namespace(settings)
    run, group = uuid.uuid4().hex[:8], f"sink-{uuid.uuid4().hex[:8]}"
    running = _RunningSink(ClickHouseSink(settings, group_id=group))
    clickhouse = _pid(stack, "clickhouse")
    try:
        _crossings(settings, run, 0, 50)
        assert _eventually(lambda: _stored(settings, run) == 50, 30)
        os.kill(clickhouse, signal.SIGSTOP)
        try:
            _crossings(settings, run, 50, 50)
            assert _eventually(lambda: running.sink.metrics_registry.get_sample_value(
                "camcount_dependency_breaker_state", {"dependency": "clickhouse"}) == 2, 30), "breaker never opened"
            assert running.thread.is_alive() and running.failure is None
        finally:
            os.kill(clickhouse, signal.SIGCONT)
        assert _eventually(lambda: _stored(settings, run) == 100, 60)
    finally:
        running.stop()
    assert running.failure is None
    reader = Consumer(consumer_config(settings, group))
    try:
        committed = reader.committed([TopicPartition(settings.kafka.crossings_topic, p)
                                      for p in range(settings.kafka.partitions)], timeout=10)
    finally:
        reader.close()
    assert sum(max(tp.offset, 0) for tp in committed) >= 100


def test_live_totals_held_back_while_redis_is_paused_arrive_once_it_returns(outage_stack):
    stack, settings = outage_stack
    settings = _namespace(settings)
    run, group = uuid.uuid4().hex[:8], f"sink-{uuid.uuid4().hex[:8]}"
    live = LiveCrossingTotals(settings.redis_url(), f"live-{run}")
    running = _RunningSink(ClickHouseSink(settings, group_id=group, live_totals=live))
    redis_pid = _pid(stack, "redis")
    reader = redis.Redis.from_url(settings.redis_url())
    key = line_key(f"live-{run}", "cam", "L", START_MS)

    def live_in() -> int:
        return int(reader.hget(key, "in") or 0)

    try:
        _crossings(settings, run, 0, 20)
        assert _eventually(lambda: live_in() == 20, 30)
        os.kill(redis_pid, signal.SIGSTOP)
        try:
            _crossings(settings, run, 20, 30)
            assert _eventually(lambda: _stored(settings, run) == 50, 60), "ClickHouse must not wait for Redis"
        finally:
            os.kill(redis_pid, signal.SIGCONT)
        _crossings(settings, run, 50, 1)  # the next batch retries the held-back crossings
        assert _eventually(lambda: live_in() == 51, 60)
    finally:
        running.stop()
    assert running.failure is None
