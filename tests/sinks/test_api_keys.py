"""API keys in the real ClickHouse of the session stack: hashed storage, revocation, and the replicas' key cache."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from clickhouse_driver import Client

from foundation.settings import Settings
from sinks.api_keys import (
    KEY_ROLES,
    SECRET_PREFIX,
    ApiKeyNotFound,
    ApiKeyStore,
    InvalidKeyRequest,
    KeyCache,
    KeyStoreUnavailable,
    key_sha256,
)
from tests.services import free_ports

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def settings(isolated_settings: Callable[..., Settings]) -> Settings:
    return isolated_settings()


@pytest.fixture
def store(settings: Settings, clickhouse_client: Callable[[Settings], Client]) -> ApiKeyStore:
    clickhouse_client(settings).execute("TRUNCATE TABLE api_keys")
    return ApiKeyStore.for_settings(settings)


def test_the_roles_are_the_apis_roles() -> None:
    from api.auth import Role

    assert set(KEY_ROLES) == {role.value for role in Role}


def test_hashing_agrees_with_the_apis() -> None:
    from api.auth import hash_key

    assert key_sha256("cck_example") == hash_key("cck_example")


def test_a_new_key_is_stored_only_as_its_hash(store: ApiKeyStore, settings: Settings,
                                               clickhouse_client: Callable[[Settings], Client]) -> None:
    new = store.create("grafana", "viewer", "alice")

    assert new.secret.startswith(SECRET_PREFIX) and len(new.secret) >= len(SECRET_PREFIX) + 43  # 256 random bits
    rows = clickhouse_client(settings).execute("SELECT * FROM api_keys FINAL")
    assert len(rows) == 1 and not any(new.secret in str(value) for value in rows[0])
    (stored,) = store.list()
    assert stored == new.key
    assert (stored.name, stored.role, stored.created_by, stored.revoked) == ("grafana", "viewer", "alice", False)
    assert stored.key_sha256 == key_sha256(new.secret)
    assert "key_sha256" not in stored.public() and new.secret not in str(stored.public())


def test_two_keys_get_different_secrets_and_ids(store: ApiKeyStore) -> None:
    a, b = store.create("a", "system", "alice"), store.create("b", "system", "alice")

    assert a.secret != b.secret and a.key.key_id != b.key.key_id


def test_revocation_is_final_and_kept_once(store: ApiKeyStore) -> None:
    new = store.create("ci-bot", "ml_engineer", "alice")

    revoked = store.revoke(new.key.key_id, "bob")
    again = store.revoke(new.key.key_id, "carol")

    assert revoked.revoked and revoked.revoked_by == "bob" and revoked.revoked_at is not None
    assert again == revoked
    assert store.list() == [revoked]
    assert revoked.version > new.key.version


@pytest.mark.parametrize("name, role, message", [
    ("x", "superuser", "unknown role 'superuser'"),
    ("", "viewer", "unusable"),
    ("a\nb", "viewer", "unusable"),
])
def test_an_unknown_role_or_unusable_name_is_refused(store: ApiKeyStore, name: str, role: str, message: str) -> None:
    with pytest.raises(InvalidKeyRequest, match=message) as raised:
        store.create(name, role, "alice")
    assert raised.value.code == "KEY_002"
    assert store.list() == []


def test_revoking_an_unknown_key_is_key_001(store: ApiKeyStore) -> None:
    with pytest.raises(ApiKeyNotFound) as raised:
        store.revoke("key_doesnotexist", "alice")
    assert (raised.value.code, raised.value.detail) == ("KEY_001", "key-not-found")


def test_the_cache_sees_a_revocation_within_its_refresh_interval(store: ApiKeyStore) -> None:
    new = store.create("dashboard", "viewer", "alice")
    cache = KeyCache(store, refresh_s=0.2)
    try:
        assert cache.find(new.key.key_sha256) == new.key
        store.revoke(new.key.key_id, "alice")
        deadline = time.monotonic() + 2
        while not cache.find(new.key.key_sha256).revoked and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cache.find(new.key.key_sha256).revoked
        assert cache.find(key_sha256("never issued")) is None
    finally:
        cache.close()


def test_the_cache_keeps_serving_the_last_keys_while_clickhouse_is_away(store: ApiKeyStore) -> None:
    new = store.create("dashboard", "viewer", "alice")
    cache = KeyCache(store, refresh_s=60)
    try:
        cache.start()
        (port,) = free_ports(1)
        store._connect = lambda: Client("127.0.0.1", port=port, connect_timeout=0.5)  # noqa: SLF001 - ClickHouse gone

        assert cache.refresh() is False
        assert cache.find(new.key.key_sha256) == new.key
    finally:
        cache.close()


def test_an_unreachable_key_table_is_sys_002() -> None:
    (port,) = free_ports(1)
    store = ApiKeyStore(lambda: Client("127.0.0.1", port=port, connect_timeout=0.5), address=f"port {port}")

    with pytest.raises(KeyStoreUnavailable, match=f"port {port}") as raised:
        store.list()
    assert raised.value.code == "SYS_002"
