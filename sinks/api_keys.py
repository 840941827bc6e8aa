"""Adapter: the API keys of ``camcount api`` in ClickHouse, table ``api_keys`` (infra/clickhouse/051_api_keys.sql),
and the in-process cache every API replica authenticates from.

Invariants:

- a key's secret is ``secrets.token_urlsafe(32)`` behind the prefix ``cck_`` (256 random bits); it is returned once,
  by :meth:`ApiKeyStore.create`, and never stored: the table holds its SHA-256 (:func:`key_sha256`);
- a key is created valid and may be revoked once; revocation is final. Revoking inserts the key's row again with
  ``revoked = 1`` and a higher ``version``; ReplacingMergeTree(version) keeps the latest row (reads use ``FINAL``);
- :class:`KeyCache` reloads the whole table every ``refresh_s`` on a background thread, so a revocation reaches every
  replica within ``refresh_s`` plus one query. While ClickHouse is away it keeps serving the keys it last loaded
  (a key revoked meanwhile stays valid there until ClickHouse is back) and logs a warning per failed refresh.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from clickhouse_driver import Client
from clickhouse_driver.errors import Error as ClickHouseError

from foundation.clickhouse import ClickHouseUnavailable, clickhouse_client, is_unavailable, redact_url
from foundation.errors import CamcountError
from foundation.settings import Settings

log = logging.getLogger(__name__)

KEYS_TABLE = "api_keys"
KEY_ROLES: tuple[str, ...] = ("viewer", "ml_engineer", "admin", "system")
"""The roles a key may have: the values of ``api.auth.Role`` (tests/sinks/test_api_keys.py checks they agree)."""
SECRET_PREFIX = "cck_"
_EPOCH = datetime(1970, 1, 1)
_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,100}")
COLUMNS = ("key_id", "name", "role", "key_sha256", "created_at", "created_by", "revoked", "revoked_at", "revoked_by",
           "version")


class ApiKeyNotFound(CamcountError, LookupError):
    """No key has this id."""

    code = "KEY_001"
    detail = "key-not-found"


class InvalidKeyRequest(CamcountError, ValueError):
    """A key cannot be created as asked: an unknown role or an unusable name."""

    code = "KEY_002"
    detail = "invalid-key-request"


class KeyStoreUnavailable(ClickHouseUnavailable):
    """The key table cannot be read or written (ClickHouse away, or the table missing)."""

    detail = "key-store-unavailable"


def new_key_id() -> str:
    """A fresh key id, ``key_`` and 16 hex digits: public, it names a key in lists, audit rows and revocations."""
    return "key_" + secrets.token_hex(8)


def key_sha256(secret: str) -> str:
    """The SHA-256 hex digest a key is stored and looked up by (the same as ``api.auth.hash_key``)."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class StoredApiKey:
    """One key as stored: never the secret. ``revoked_at`` is None and ``revoked_by`` '' while it is valid."""

    key_id: str
    name: str
    role: str
    key_sha256: str
    created_at: datetime
    created_by: str
    revoked: bool
    revoked_at: datetime | None
    revoked_by: str
    version: int

    def public(self) -> dict[str, Any]:
        """What may be shown to an admin or written to the audit log: everything but the hash."""
        return {"key_id": self.key_id, "name": self.name, "role": self.role, "created_at": self.created_at.isoformat(),
                "created_by": self.created_by, "revoked": self.revoked,
                "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None, "revoked_by": self.revoked_by}


@dataclass(frozen=True)
class NewApiKey:
    """A key just created: ``secret`` is the only copy of the key; show it once."""

    key: StoredApiKey
    secret: str


def _row(key: StoredApiKey) -> dict[str, Any]:
    return {"key_id": key.key_id, "name": key.name, "role": key.role, "key_sha256": key.key_sha256,
            "created_at": key.created_at.astimezone(UTC).replace(tzinfo=None, microsecond=0),
            "created_by": key.created_by, "revoked": int(key.revoked),
            "revoked_at": (key.revoked_at.astimezone(UTC).replace(tzinfo=None, microsecond=0) if key.revoked_at
                           else _EPOCH),
            "revoked_by": key.revoked_by, "version": key.version}


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _stored(row: tuple[Any, ...]) -> StoredApiKey:
    f = dict(zip(COLUMNS, row, strict=True))
    revoked = bool(f["revoked"])
    return StoredApiKey(key_id=f["key_id"], name=f["name"], role=f["role"], key_sha256=f["key_sha256"],
                        created_at=_utc(f["created_at"]), created_by=f["created_by"], revoked=revoked,
                        revoked_at=_utc(f["revoked_at"]) if revoked else None, revoked_by=f["revoked_by"],
                        version=int(f["version"]))


class ApiKeyStore:
    """Create, revoke and list API keys in ClickHouse (see the module docstring for the invariants).

    Each call uses its own client (``connect``) and closes it, so one store may be shared by threads. Calls are not
    retried: they come from a person (CLI, admin API) who can try again, and the audit log around them retries.
    """

    def __init__(self, connect: Callable[[], Client], *, address: str = "ClickHouse",
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._connect = connect
        self._address = address
        self._clock = clock

    @classmethod
    def for_settings(cls, settings: Settings) -> ApiKeyStore:
        return cls(lambda: clickhouse_client(settings), address=redact_url(settings.clickhouse_url()))

    def create(self, name: str, role: str, created_by: str, key_id: str | None = None) -> NewApiKey:
        """A new valid key named ``name`` with ``role`` (id ``key_id``, default a new one from :func:`new_key_id`);
        InvalidKeyRequest for an unknown role or an unusable name."""
        if role not in KEY_ROLES:
            raise InvalidKeyRequest(f"unknown role {role!r}: use one of {', '.join(KEY_ROLES)}")
        if not _NAME.fullmatch(name) or not name.strip():
            raise InvalidKeyRequest(f"key name {name!r} is unusable: give 1 to 100 printable characters")
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        now = self._clock()
        key = StoredApiKey(key_id=key_id or new_key_id(), name=name.strip(), role=role,
                           key_sha256=key_sha256(secret), created_at=now.replace(microsecond=0),
                           created_by=created_by, revoked=False, revoked_at=None, revoked_by="",
                           version=int(now.timestamp() * 1000))
        self._insert(key)
        log.info("API key %s (%s, role %s) created by %s", key.key_id, key.name, role, created_by)
        return NewApiKey(key, secret)

    def revoke(self, key_id: str, revoked_by: str) -> StoredApiKey:
        """Revoke ``key_id`` (ApiKeyNotFound if no key has it); revoking a revoked key changes nothing.
        Returns the key as it is now."""
        key = self.get(key_id)
        if key.revoked:
            return key
        now = self._clock()
        revoked = replace(key, revoked=True, revoked_at=now.replace(microsecond=0), revoked_by=revoked_by,
                          version=max(key.version + 1, int(now.timestamp() * 1000)))
        self._insert(revoked)
        log.info("API key %s (%s) revoked by %s", key_id, key.name, revoked_by)
        return revoked

    def get(self, key_id: str) -> StoredApiKey:
        for key in self._select("WHERE key_id = %(key_id)s", {"key_id": key_id}):
            return key
        raise ApiKeyNotFound(f"no API key has id {key_id!r}", remedy="list the keys (`camcount api keys list`)")

    def list(self) -> list[StoredApiKey]:
        """Every key, revoked ones included, oldest first."""
        return self._select("", {})

    def _insert(self, key: StoredApiKey) -> None:
        self._call(lambda client: client.execute(f"INSERT INTO {KEYS_TABLE} ({', '.join(COLUMNS)}) VALUES",
                                                 [_row(key)]))

    def _select(self, where: str, params: dict[str, Any]) -> list[StoredApiKey]:
        rows = self._call(lambda client: client.execute(
            f"SELECT {', '.join(COLUMNS)} FROM {KEYS_TABLE} FINAL {where} ORDER BY created_at, key_id", params))
        return [_stored(row) for row in rows]

    def _call(self, call: Callable[[Client], Any]) -> Any:
        client = self._connect()
        try:
            return call(client)
        except (ClickHouseError, OSError, EOFError) as exc:
            if is_unavailable(exc) or getattr(exc, "code", None) in (60, 81):
                raise KeyStoreUnavailable(
                    f"the API key table at {self._address} cannot be used ({' '.join(str(exc).split()[:12])})",
                    remedy="start ClickHouse and run `camcount provision`, or set CLICKHOUSE_URL") from exc
            raise
        finally:
            client.disconnect()


class KeyCache:
    """Every stored key by hash, in memory, reloaded from the store every ``refresh_s`` on a daemon thread.

    ``find`` never waits on ClickHouse once the first load is done: it reads the last snapshot. The first ``find``
    (or :meth:`start`) loads synchronously and starts the thread; a first load that fails leaves the cache empty
    (every stored key unknown) until a refresh succeeds. :meth:`close` stops the thread.
    """

    def __init__(self, store: ApiKeyStore, refresh_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self.refresh_s = refresh_s
        self._clock = clock
        self._by_hash: dict[str, StoredApiKey] = {}
        self.loaded_at: float | None = None
        """Monotonic time of the last successful load; None before the first."""
        self._started = False
        self._start_lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def find(self, key_sha256: str) -> StoredApiKey | None:
        """The stored key with this hash (revoked ones included), or None."""
        if not self._started:
            self.start()
        return self._by_hash.get(key_sha256)

    def start(self) -> None:
        with self._start_lock:
            if self._started:
                return
            self.refresh()
            self._thread = threading.Thread(target=self._run, name="api-key-cache", daemon=True)
            self._thread.start()
            self._started = True

    def refresh(self) -> bool:
        """Reload the keys now; on failure keep the last snapshot, log a warning and return False."""
        try:
            keys = self._store.list()
        except (CamcountError, ClickHouseError, OSError, EOFError) as exc:
            age = ("never loaded" if self.loaded_at is None
                   else f"last loaded {self._clock() - self.loaded_at:.0f} s ago")
            log.warning("API keys not refreshed (%s); serving the keys %s", " ".join(str(exc).split()), age)
            return False
        self._by_hash = {key.key_sha256: key for key in keys}  # one reference swap: readers see old or new
        self.loaded_at = self._clock()
        return True

    def _run(self) -> None:
        while not self._stopping.wait(self.refresh_s):
            self.refresh()

    def close(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
