"""Who may call what: API keys, roles, the role matrix, and deny-by-default route guards.

A client presents a key as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. The :class:`KeyRing` hashes it
(SHA-256; keys are stored only as hashes) and looks it up: first the bootstrap admin key from the environment
variable ``CAMCOUNT_API_ADMIN_KEY`` (never logged), then each :class:`KeyLookup`: the file ``api.keys_file``
(:class:`KeysFile`, when set) and the API key store (when the process has one).

Every route either depends on :func:`requires` (which roles may call it) or is marked :func:`public`;
``api.app.create_app`` refuses to build an app with a route that is neither (:func:`route_guard`).

Failures: no key -> 401 ``AUTH_001``; an unknown or revoked key -> 401 ``AUTH_002``; a role the route does not
admit -> 403 ``AUTH_003``; more than ``api.auth_failure_limit`` 401s from one client address within
``api.auth_failure_window_s`` -> 429 ``AUTH_004`` for that address until its budget refills, whatever key it sends.
The failure budget is an in-process token bucket per address: each API replica counts its own failures.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, TypeVar

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from foundation.errors import CamcountError, ConfigError

log = logging.getLogger(__name__)

ADMIN_KEY_ENV = "CAMCOUNT_API_ADMIN_KEY"
BOOTSTRAP_ADMIN_ID = "bootstrap-admin"


class Role(StrEnum):
    VIEWER = "viewer"
    ML_ENGINEER = "ml_engineer"
    ADMIN = "admin"
    SYSTEM = "system"


ROLE_MATRIX: dict[Role, frozenset[Role]] = {
    # role        -> the roles whose routes it may call (its own included)
    Role.VIEWER: frozenset({Role.VIEWER}),  # counts and results; inference on a model's production alias only
    Role.SYSTEM: frozenset({Role.SYSTEM}),  # service accounts: inference on any version, batch inference, OIP v2
    Role.ML_ENGINEER: frozenset({Role.ML_ENGINEER, Role.SYSTEM, Role.VIEWER}),  # + models and experiments
    Role.ADMIN: frozenset(Role),  # everything, keys and the audit trail included
}
"""The role matrix, the one place it is written down: a route that ``requires(R)`` admits every role whose row
holds R. docs/api.md shows the same table by route."""


def acts_as(role: Role, wanted: Role) -> bool:
    """Whether a principal of ``role`` may call a route that requires ``wanted`` (see :data:`ROLE_MATRIX`)."""
    return wanted in ROLE_MATRIX[role]


class AuthError(CamcountError):
    """Base of the authentication and authorisation failures."""

    code = "AUTH_001"
    detail = "missing-credentials"


class MissingCredentials(AuthError):
    """No key was presented."""


class InvalidKey(AuthError):
    """The key presented is unknown or revoked."""

    code = "AUTH_002"
    detail = "invalid-key"


class RoleForbidden(AuthError):
    """The key is valid, but its role may not call this route."""

    code = "AUTH_003"
    detail = "role-forbidden"


class TooManyAuthFailures(AuthError):
    """This client address failed authentication too often; it is refused until its failure budget refills."""

    code = "AUTH_004"
    detail = "too-many-failures"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message, remedy=f"wait {retry_after_s:.0f} s, then send a valid key")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id and name, its role, and ``client``, the remote address it called from."""

    key_id: str
    name: str
    role: Role
    client: str


@dataclass(frozen=True)
class StoredKey:
    """An API key as stored: never the secret, only its SHA-256 hex digest."""

    key_id: str
    name: str
    role: Role
    key_sha256: str
    revoked: bool


class KeyLookup(Protocol):
    def find(self, key_sha256: str) -> StoredKey | None:
        """The stored key with this hash (revoked ones included), or None."""


def hash_key(secret: str) -> str:
    """SHA-256 hex digest of a presented key: what key stores keep instead of the key."""
    return hashlib.sha256(secret.encode()).hexdigest()


class FailureBudget:
    """Per client address: a token bucket of ``limit`` authentication failures refilled at ``limit`` per
    ``window_s``. In process memory only, so each API replica counts its own clients' failures; thread-safe.

    Invariant: the table holds at most ``max_clients`` addresses (the fullest buckets are forgotten first).
    """

    def __init__(self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic,
                 max_clients: int = 100_000) -> None:
        self.limit = limit
        self.window_s = window_s
        self._rate = limit / window_s
        self._clock = clock
        self._max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, last update)
        self._lock = threading.Lock()

    def _tokens(self, client: str, now: float) -> float:
        tokens, updated = self._buckets.get(client, (float(self.limit), now))
        return min(float(self.limit), tokens + (now - updated) * self._rate)

    def check(self, client: str) -> None:
        """Raise TooManyAuthFailures while ``client`` has no failure left."""
        with self._lock:
            tokens = self._tokens(client, self._clock())
        if tokens < 1.0:
            wait = (1.0 - tokens) / self._rate
            raise TooManyAuthFailures(
                f"too many failed authentications from {client}: more than {self.limit} within "
                f"{self.window_s:g} s", retry_after_s=max(1.0, wait))

    def failed(self, client: str) -> None:
        """Spend one failure of ``client``'s budget."""
        with self._lock:
            now = self._clock()
            self._buckets[client] = (max(0.0, self._tokens(client, now) - 1.0), now)
            if len(self._buckets) > self._max_clients:
                fullest = max(self._buckets, key=lambda c: self._tokens(c, now))
                del self._buckets[fullest]


class KeysFile:
    """A :class:`KeyLookup` on a JSON file of stored keys (hashes only, so it holds no secret), e.g. mounted from a
    Kubernetes Secret or ConfigMap: ``[{"key_id", "name", "role", "key_sha256", "revoked"?}, ...]``. The file is
    read again whenever its modification time changes, so a revocation applies without a restart."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._mtime: float | None = None
        self._keys: dict[str, StoredKey] = {}
        self._lock = threading.Lock()

    def find(self, key_sha256: str) -> StoredKey | None:
        with self._lock:
            mtime = self.path.stat().st_mtime
            if mtime != self._mtime:
                self._keys = {key.key_sha256: key for key in self._read()}
                self._mtime = mtime
            return self._keys.get(key_sha256)

    def _read(self) -> list[StoredKey]:
        try:
            entries = json.loads(self.path.read_text())
            return [StoredKey(key_id=str(e["key_id"]), name=str(e["name"]), role=Role(e["role"]),
                              key_sha256=str(e["key_sha256"]).lower(), revoked=bool(e.get("revoked", False)))
                    for e in entries]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"API keys file {self.path} is unreadable: {exc}",
                              remedy='write a JSON list of {"key_id", "name", "role", "key_sha256", "revoked"}') \
                from exc


class KeyRing:
    """Turns a presented key into a :class:`Principal`, or raises the AuthError that says why not.

    Checks the bootstrap admin key (compared in constant time) first, then each of ``lookups`` in order (the first
    that knows the hash decides, so a key revoked there stays revoked); every 401 spends one of the client
    address's failure budget, and an address without budget is refused before its key is looked at.
    """

    def __init__(self, admin_key: str | None, lookups: list[KeyLookup], budget: FailureBudget) -> None:
        self._admin_sha256 = hash_key(admin_key) if admin_key else None
        self.lookups = lookups
        self.budget = budget

    @classmethod
    def from_env(cls, lookups: list[KeyLookup], failure_limit: int, failure_window_s: float) -> KeyRing:
        """The admin key from ``CAMCOUNT_API_ADMIN_KEY`` (if set) and ``lookups``."""
        admin_key = os.environ.get(ADMIN_KEY_ENV) or None
        if admin_key is None and not lookups:
            log.warning("no %s and no key store: every authenticated route will answer 401", ADMIN_KEY_ENV)
        return cls(admin_key, lookups, FailureBudget(failure_limit, failure_window_s))

    def _find(self, digest: str) -> StoredKey | None:
        for lookup in self.lookups:
            stored = lookup.find(digest)
            if stored is not None:
                return stored
        return None

    def authenticate(self, secret: str | None, client: str) -> Principal:
        self.budget.check(client)
        if not secret:
            self.budget.failed(client)
            raise MissingCredentials("this route needs an API key",
                                     remedy="send `Authorization: Bearer <key>` or `X-API-Key: <key>`")
        digest = hash_key(secret)
        if self._admin_sha256 is not None and hmac.compare_digest(digest, self._admin_sha256):
            return Principal(BOOTSTRAP_ADMIN_ID, "bootstrap admin key", Role.ADMIN, client)
        stored = self._find(digest)
        if stored is None or stored.revoked:
            self.budget.failed(client)
            raise InvalidKey("the API key is unknown or revoked", remedy="ask an admin for a valid key")
        return Principal(stored.key_id, stored.name, stored.role, client)


def client_address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


_bearer = HTTPBearer(auto_error=False, description="an API key as a bearer token")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key")

_REQUIRED_ROLES = "__camcount_requires__"
_PUBLIC = "__camcount_public__"


def requires(*roles: Role) -> Callable[..., Any]:
    """FastAPI dependency factory: ``Depends(requires(Role.ML_ENGINEER))`` yields the calling :class:`Principal`
    when its role acts as one of ``roles`` (ADMIN always does), else raises the AuthError that says why not.

    The principal is also left on ``request.state.principal`` for request logging and audit.
    """
    if not roles:
        raise ValueError("requires() needs at least one role; mark open routes with @public instead")
    wanted = frozenset(roles)

    async def principal(request: Request,
                        bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),
                        api_key: str | None = Depends(_api_key)) -> Principal:
        key_ring: KeyRing = request.app.state.services.key_ring
        secret = bearer.credentials if bearer is not None else api_key
        who = key_ring.authenticate(secret, client_address(request))
        request.state.principal = who
        if not any(acts_as(who.role, role) for role in wanted):
            raise RoleForbidden(
                f"role {who.role.value!r} of key {who.key_id!r} may not call this route; it needs "
                f"{' or '.join(sorted(r.value for r in wanted))} (or admin)",
                remedy="use a key with one of those roles")
        return who

    setattr(principal, _REQUIRED_ROLES, wanted)
    return principal


Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def public(endpoint: Endpoint) -> Endpoint:
    """Marks a route's endpoint as open to unauthenticated callers (health, metadata, the OpenAPI document).
    Apply it below the router decorator: ``@router.get(...)`` then ``@public`` then ``async def ...``."""
    setattr(endpoint, _PUBLIC, True)
    return endpoint


def required_roles(dependency: Callable[..., Any]) -> frozenset[Role] | None:
    """The roles a dependency made by :func:`requires` admits, or None for any other callable."""
    return getattr(dependency, _REQUIRED_ROLES, None)


def is_public(endpoint: Callable[..., Any]) -> bool:
    return bool(getattr(endpoint, _PUBLIC, False))
