"""Fixtures of the management tests: a provisioned namespace, its audit log, and an actor."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from clickhouse_driver import Client

from foundation.settings import Settings
from sinks.audit import Actor, AuditLog, AuditQuery, AuditRecord

ALICE = Actor("alice", "os-user", "cli", "build-host", id="alice")


@pytest.fixture(scope="module")
def settings(isolated_settings: Callable[..., Settings]) -> Settings:
    return isolated_settings()


@pytest.fixture
def audit(settings: Settings, clickhouse_client: Callable[[Settings], Client]) -> AuditLog:
    """The namespace's audit log, emptied."""
    clickhouse_client(settings).execute("TRUNCATE TABLE audit_log")
    return AuditLog.for_settings(settings)


def audit_rows(audit: AuditLog) -> list[AuditRecord]:
    """Every row of the audit log, oldest first."""
    return list(reversed(audit.query(AuditQuery(limit=1000)).records))


def state(text: str):
    return json.loads(text) if text else None
