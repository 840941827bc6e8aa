"""API key actions (management.keys) against the real ClickHouse key table and audit log."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from clickhouse_driver import Client

from foundation.settings import Settings
from management import keys as manage
from sinks.api_keys import ApiKeyNotFound, ApiKeyStore
from sinks.audit import Actor, AuditLog
from tests.management.conftest import ALICE, audit_rows, state

pytestmark = pytest.mark.integration

ADMIN_KEY = Actor("ops-admin", "api-key", "api", "10.1.2.3", id="key_00000000000000aa")


@pytest.fixture
def store(settings: Settings, clickhouse_client: Callable[[Settings], Client]) -> ApiKeyStore:
    clickhouse_client(settings).execute("TRUNCATE TABLE api_keys")
    return ApiKeyStore.for_settings(settings)


def test_create_and_revoke_are_recorded_without_the_secret_or_its_hash(store: ApiKeyStore, audit: AuditLog) -> None:
    new = manage.create(store, audit, ADMIN_KEY, "grafana", "viewer")
    revoked = manage.revoke(store, audit, ALICE, new.key.key_id)

    assert new.key.created_by == "ops-admin (key_00000000000000aa)" and revoked.revoked_by == "alice (alice)"
    created, revoke = audit_rows(audit)
    assert (created.action, created.target, created.actor, created.actor_kind, created.client) == (
        "key.create", new.key.key_id, "ops-admin", "api-key", "10.1.2.3")
    assert state(created.after)["role"] == "viewer" and created.before == ""
    assert (revoke.action, revoke.target) == ("key.revoke", new.key.key_id)
    assert state(revoke.before)["revoked"] is False and state(revoke.after)["revoked"] is True
    for row in (created, revoke):
        assert new.secret not in row.model_dump_json() and new.key.key_sha256 not in row.model_dump_json()
    assert [k.revoked for k in manage.list_keys(store)] == [True]


def test_revoking_an_unknown_key_is_recorded_as_key_001(store: ApiKeyStore, audit: AuditLog) -> None:
    with pytest.raises(ApiKeyNotFound):
        manage.revoke(store, audit, ALICE, "key_unknown")

    (row,) = audit_rows(audit)
    assert (row.result, row.error_code, row.target) == ("error", "KEY_001", "key_unknown")


def test_a_key_with_an_unknown_role_is_refused_and_recorded(store: ApiKeyStore, audit: AuditLog) -> None:
    with pytest.raises(ValueError, match="unknown role"):
        manage.create(store, audit, ALICE, "x", "root")

    assert manage.list_keys(store) == []
    assert audit_rows(audit)[0].error_code == "KEY_002"
