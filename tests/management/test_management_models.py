"""Model actions (management.models) against a real registry copy and the real ClickHouse audit log."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from clickhouse_driver import Client

from foundation.resilience import ResilienceSettings
from foundation.settings import Settings
from management import models as manage
from models.errors import ModelNotFound, ModelVersionExists
from models.registry import ModelRegistry
from sinks.audit import AuditLog, AuditNotRecorded, AuditUnavailable
from tests.management.conftest import ALICE, audit_rows, state
from tests.services import free_ports

pytestmark = pytest.mark.integration


@pytest.fixture
def registry(two_version_registry: tuple[Path, str]) -> ModelRegistry:
    return ModelRegistry(two_version_registry[0])


def test_promote_moves_the_alias_and_writes_one_row_with_the_aliases_before_and_after(
        registry: ModelRegistry, audit: AuditLog, two_version_registry: tuple[Path, str]) -> None:
    production = two_version_registry[1]

    change = manage.promote(registry, audit, ALICE, "yolov4-tiny", "9.0.0", reason="faster")

    assert registry.aliases("yolov4-tiny") == {"production": "9.0.0", "previous": production}
    assert change.after == {"production": "9.0.0", "previous": production}
    (row,) = audit_rows(audit)
    assert (row.action, row.target, row.result, row.actor, row.source, row.reason) == (
        "model.promote", "yolov4-tiny", "ok", "alice", "cli", "faster")
    assert state(row.before)["aliases"]["production"] == production
    assert state(row.after) == {"aliases": {"production": "9.0.0", "previous": production}}


def test_rollback_is_recorded_with_both_alias_maps(registry: ModelRegistry, audit: AuditLog,
                                                   two_version_registry: tuple[Path, str]) -> None:
    production = two_version_registry[1]
    manage.promote(registry, audit, ALICE, "yolov4-tiny", "9.0.0")

    change = manage.rollback(registry, audit, ALICE, "yolov4-tiny")

    assert change.version == production
    rows = audit_rows(audit)
    assert [r.action for r in rows] == ["model.promote", "model.rollback"]
    assert state(rows[1].before)["aliases"]["production"] == "9.0.0"
    assert state(rows[1].after)["aliases"] == {"production": production, "previous": "9.0.0"}


def test_a_failed_promote_is_recorded_as_an_error_and_changes_nothing(registry: ModelRegistry,
                                                                       audit: AuditLog) -> None:
    before = registry.aliases("yolov4-tiny")

    with pytest.raises(ModelNotFound):
        manage.promote(registry, audit, ALICE, "yolov4-tiny", "7.7.7")

    assert registry.aliases("yolov4-tiny") == before
    (row,) = audit_rows(audit)
    assert (row.result, row.error_code) == ("error", "MODEL_001") and "7.7.7" in row.error_message
    assert row.before == row.after


@pytest.mark.parametrize("name", ["../../etc", "yolov4-tiny@1.0.0"])
def test_a_name_that_is_no_model_name_is_model_001_before_storage_is_read(registry: ModelRegistry, audit: AuditLog,
                                                                          name: str) -> None:
    with pytest.raises(ModelNotFound):
        manage.rollback(registry, audit, ALICE, name)
    assert audit_rows(audit)[0].error_code == "MODEL_001"


def test_register_is_recorded_with_the_new_manifest(registry: ModelRegistry, audit: AuditLog) -> None:
    current = registry.resolve("yolov4-tiny@production")
    fields = current.manifest.model_dump(exclude={"version", "sha256", "created_at"}) | {"version": "9.1.0"}

    manifest = manage.register(registry, audit, ALICE, current.path, fields)
    with pytest.raises(ModelVersionExists):
        manage.register(registry, audit, ALICE, current.path, fields)

    ok, failed = audit_rows(audit)
    assert (ok.action, ok.target, ok.result) == ("model.register", "yolov4-tiny", "ok")
    assert state(ok.after)["manifest"]["version"] == manifest.version == "9.1.0"
    assert "9.1.0" not in state(ok.before)["versions"]
    assert (failed.result, failed.error_code) == ("error", "MODEL_004")


def test_with_the_audit_log_away_a_promote_is_refused_and_nothing_changes(registry: ModelRegistry) -> None:
    (port,) = free_ports(1)
    away = AuditLog.for_settings(Settings(clickhouse={"url": f"clickhouse://127.0.0.1:{port}/x",
                                                      "connect_timeout_s": 0.3},
                                          resilience=ResilienceSettings(retry_initial_s=0.05, retry_max_s=0.1)),
                                 retry_budget_s=0.3)
    before = registry.aliases("yolov4-tiny")
    started = time.monotonic()

    with pytest.raises(AuditUnavailable) as raised:
        manage.promote(registry, away, ALICE, "yolov4-tiny", "9.0.0")

    assert raised.value.code == "SYS_002"
    assert registry.aliases("yolov4-tiny") == before
    assert time.monotonic() - started < 3


def test_when_the_audit_table_vanishes_mid_action_the_change_stands_and_the_row_is_logged(
        registry: ModelRegistry, audit: AuditLog, settings: Settings,
        clickhouse_client: Callable[[Settings], Client], caplog: pytest.LogCaptureFixture) -> None:
    from management.auditing import run_audited
    from sinks.audit import AuditAction

    client = clickhouse_client(settings)

    def promote_then_lose_the_table() -> None:
        registry.promote("yolov4-tiny", "9.0.0")
        client.execute("DROP TABLE audit_log")

    try:
        with caplog.at_level(logging.ERROR, logger="management.auditing"), pytest.raises(AuditNotRecorded) as raised:
            run_audited(audit, ALICE, AuditAction.MODEL_PROMOTE, "yolov4-tiny", promote_then_lose_the_table)
    finally:
        from foundation.clickhouse import apply_clickhouse_ddl, clickhouse_database

        apply_clickhouse_ddl(settings.clickhouse_url(), clickhouse_database(settings))

    assert registry.aliases("yolov4-tiny")["production"] == "9.0.0"
    assert (raised.value.code, raised.value.detail) == ("SYS_002", "audit-not-recorded")
    assert "do not repeat" in raised.value.one_line()
    assert "AUDIT ROW NOT WRITTEN" in caplog.text and '"actor": "alice"' in caplog.text
