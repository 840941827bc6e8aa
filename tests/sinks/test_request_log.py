"""The API request log: buffered, written in batches, and dropped-and-counted (never raised) when ClickHouse is away
or the buffer is full."""

from __future__ import annotations

import time
import uuid

import pytest

from foundation.clickhouse import apply_clickhouse_ddl, clickhouse_database
from foundation.resilience import ResilienceSettings, circuit_breaker
from foundation.settings import Settings
from sinks.request_log import RequestLog, RequestRow
from tests.services import clickhouse_client_for


def row(request_id: str = "r1", status: int = 200) -> RequestRow:
    now_ms = int(time.time() * 1000)
    return RequestRow(request_time=RequestRow.time_of(now_ms), request_ts_ms=now_ms, request_id=request_id,
                      method="POST", route="/api/v1/models/{modelId}/inference", status=status, error_code="",
                      error_detail="", latency_ms=12.5, model_name="m", model_version="1.0.0", images=1,
                      cache_hits=0, key_id="k", client="127.0.0.1")


def breaker():
    return circuit_breaker(f"test-log-{uuid.uuid4().hex[:6]}", ResilienceSettings(breaker_failures=2))


class Unreachable:
    def __call__(self):
        raise ConnectionRefusedError("no ClickHouse here")


def test_rows_are_dropped_and_counted_when_clickhouse_is_away() -> None:
    drops: list[tuple[int, str]] = []
    log = RequestLog(Unreachable(), breaker(), capacity=100, flush_s=60, on_drop=lambda n, why: drops.append((n, why)))
    for i in range(3):
        log.record(row(f"r{i}"))

    assert log.flush() == 0
    log.record(row("r9"))
    log.flush()
    log.record(row("r10"))
    log.flush()

    # the second failure trips the breaker (pybreaker raises its own error on that call), the third finds it open
    assert drops == [(3, "clickhouse-error"), (1, "breaker-open"), (1, "breaker-open")]


def test_a_full_buffer_drops_new_rows_and_counts_them() -> None:
    drops: list[tuple[int, str]] = []
    log = RequestLog(Unreachable(), breaker(), capacity=2, flush_s=60, on_drop=lambda n, why: drops.append((n, why)))

    for i in range(4):
        log.record(row(f"r{i}"))

    assert drops == [(1, "buffer-full"), (1, "buffer-full")]


@pytest.mark.integration
def test_rows_reach_the_api_requests_table(isolated_settings) -> None:
    settings: Settings = isolated_settings(provisioned=False)
    apply_clickhouse_ddl(settings.clickhouse_url(), clickhouse_database(settings))
    log = RequestLog(lambda: clickhouse_client_for(settings), breaker(), capacity=100, flush_s=0.1)
    log.start()
    log.record(row("written-1", status=422))
    log.stop()

    client = clickhouse_client_for(settings)
    try:
        rows = client.execute("SELECT request_id, status, images FROM api_requests FINAL")
    finally:
        client.disconnect()
    assert rows == [("written-1", 422, 1)]
