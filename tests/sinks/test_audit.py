"""The audit trail in the real ClickHouse of the session stack: rows, filters, paging, and an unreachable server."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from clickhouse_driver import Client

from foundation.clickhouse import clickhouse_client
from foundation.resilience import ResilienceSettings
from foundation.settings import Settings
from sinks.audit import (
    COLUMNS,
    Actor,
    AuditAction,
    AuditLog,
    AuditQuery,
    AuditUnavailable,
    InvalidAuditQuery,
)
from tests.services import free_ports

pytestmark = pytest.mark.integration

ALICE = Actor("alice", "os-user", "cli", "build-host", id="alice")
BOT = Actor("ci-bot", "api-key", "api", "10.0.0.7", id="key_0123456789abcdef")
FAST = ResilienceSettings(retry_initial_s=0.05, retry_max_s=0.1)


class StepClock:
    """A clock that moves one second per reading, from a fixed start, so rows have distinct, known times."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture(scope="module")
def settings(isolated_settings: Callable[..., Settings]) -> Settings:
    return isolated_settings()


@pytest.fixture
def audit(settings: Settings, clickhouse_client: Callable[[Settings], Client]) -> AuditLog:
    clickhouse_client(settings).execute("TRUNCATE TABLE audit_log")
    return AuditLog.for_settings(settings)


def test_a_record_reads_back_with_every_field(audit: AuditLog) -> None:
    written = audit.record(BOT, AuditAction.MODEL_PROMOTE, "yolo", reason="winner of exp-1",
                           before={"aliases": {"production": "1.0.0"}},
                           after={"aliases": {"production": "1.1.0", "previous": "1.0.0"}})

    (read,) = audit.query(AuditQuery()).records
    assert read == written
    assert (read.actor, read.actor_id, read.actor_kind, read.source, read.client) == (
        "ci-bot", "key_0123456789abcdef", "api-key", "api", "10.0.0.7")
    assert (read.action, read.target, read.result, read.error_code, read.reason) == (
        "model.promote", "yolo", "ok", "", "winner of exp-1")
    assert read.before == '{"aliases": {"production": "1.0.0"}}'
    assert read.after == '{"aliases": {"previous": "1.0.0", "production": "1.1.0"}}'
    assert read.at.tzinfo is not None and abs(read.at_ms - time.time() * 1000) < 60_000


def test_a_failed_action_keeps_its_error_code_and_message(audit: AuditLog) -> None:
    from models.errors import ModelNotFound

    audit.record(ALICE, AuditAction.MODEL_PROMOTE, "yolo", error=ModelNotFound("yolo@9.9.9 is not registered"))

    (read,) = audit.query(AuditQuery()).records
    assert (read.result, read.error_code) == ("error", "MODEL_001")
    assert "yolo@9.9.9 is not registered" in read.error_message
    assert (read.before, read.after) == ("", "")


def test_a_row_inserted_twice_reads_once(audit: AuditLog, settings: Settings) -> None:
    """What a retried insert after a lost reply does: the same event id twice."""
    record = audit.record(ALICE, AuditAction.KEY_REVOKE, "key_1")
    row = record.model_dump() | {"at": record.at.replace(tzinfo=None)}
    client = clickhouse_client(settings)
    try:
        client.execute(f"INSERT INTO audit_log ({', '.join(COLUMNS)}) VALUES", [row])
    finally:
        client.disconnect()

    assert [r.event_id for r in audit.query(AuditQuery()).records] == [record.event_id]


def _fill(settings: Settings, start: datetime) -> list[str]:
    """Writes 25 rows a second apart: alice promotes, ci-bot stops experiments and revokes keys by turns."""
    audit = AuditLog.for_settings(settings)
    audit._clock = StepClock(start)  # noqa: SLF001 - known, distinct times
    ids = []
    for i in range(25):
        actor, action = [(ALICE, AuditAction.MODEL_PROMOTE), (BOT, AuditAction.EXPERIMENT_STOP),
                         (BOT, AuditAction.KEY_REVOKE)][i % 3]
        ids.append(audit.record(actor, action, f"target-{i}").event_id)
    return ids


def test_paging_returns_every_row_exactly_once_newest_first(audit: AuditLog, settings: Settings) -> None:
    ids = _fill(settings, datetime(2024, 5, 1, 12, 0, tzinfo=UTC))
    seen, cursor, pages = [], None, 0
    while True:
        page = audit.query(AuditQuery(limit=10, cursor=cursor))
        seen += [r.event_id for r in page.records]
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break

    assert pages == 3
    assert seen == list(reversed(ids))


def test_filters_select_by_actor_action_family_and_time(audit: AuditLog, settings: Settings) -> None:
    start = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    _fill(settings, start)

    by_alice = audit.query(AuditQuery(actor="alice", limit=100)).records
    assert len(by_alice) == 9 and {r.action for r in by_alice} == {"model.promote"}
    assert len(audit.query(AuditQuery(action="key", limit=100)).records) == 8
    assert len(audit.query(AuditQuery(action="experiment.stop", limit=100)).records) == 8
    window = audit.query(AuditQuery(since=start + timedelta(seconds=5), until=start + timedelta(seconds=10))).records
    assert [r.target for r in window] == [f"target-{i}" for i in (8, 7, 6, 5, 4)]


@pytest.mark.parametrize("query, message", [
    (AuditQuery(limit=0), "limit 0 is out of range"),
    (AuditQuery(cursor="not-a-cursor"), "was not issued by an audit page"),
    (AuditQuery(since=datetime(2024, 5, 1)), "has no time zone"),
])
def test_a_bad_query_is_an_input_error(audit: AuditLog, query: AuditQuery, message: str) -> None:
    with pytest.raises(InvalidAuditQuery, match=message) as raised:
        audit.query(query)
    assert raised.value.code == "INF_001"


def test_an_unreachable_clickhouse_is_sys_002_after_the_retry_budget() -> None:
    (port,) = free_ports(1)
    settings = Settings(clickhouse={"url": f"clickhouse://127.0.0.1:{port}/camcount", "connect_timeout_s": 0.5},
                        resilience=FAST)
    audit = AuditLog.for_settings(settings, retry_budget_s=0.5)
    started = time.monotonic()

    with pytest.raises(AuditUnavailable, match=f"127.0.0.1:{port}") as raised:
        audit.ensure_writable()
    assert raised.value.code == "SYS_002" and raised.value.detail == "audit-unavailable"
    assert time.monotonic() - started < 3


def test_a_database_without_the_audit_table_says_to_provision_at_once(
        isolated_settings: Callable[..., Settings], clickhouse_client: Callable[[Settings], Client]) -> None:
    unprovisioned = isolated_settings()
    clickhouse_client(unprovisioned).execute("DROP TABLE audit_log")
    audit = AuditLog.for_settings(unprovisioned.model_copy(update={"resilience": FAST}), retry_budget_s=5)
    started = time.monotonic()

    with pytest.raises(AuditUnavailable) as check:
        audit.ensure_writable()
    with pytest.raises(AuditUnavailable) as write:
        audit.record(ALICE, AuditAction.MODEL_PROMOTE, "yolo")
    assert "does not exist" in check.value.one_line() and "camcount provision" in check.value.one_line()
    assert "camcount provision" in write.value.one_line()
    assert time.monotonic() - started < 2, "a missing table is not retried"
