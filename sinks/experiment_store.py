"""Adapter: experiment state in Redis.

Redis key layout (values are UTF-8 JSON unless noted):

Every key starts with a prefix (``camcount`` by default, ``settings.redis.key_prefix``):

- ``camcount:experiment:active``: the name of the running experiment (plain string); absent when none runs;
- ``camcount:experiment:{name}``: the experiment definition with its status, started_at, stopped_at and
  stop_reason (``Experiment.model_dump_json``); kept after it stops, so a name is never reused;
- ``camcount:experiments:history``: list of :class:`HistoryEntry`, oldest first (RPUSH).

The name ``active`` is reserved (its key would be the active pointer). Invariants: at most one experiment is
running, and it is the one the active key names; start and stop change the keys in one MULTI/EXEC guarded by
WATCH, so two concurrent starts cannot both succeed. The keys are not hash-tagged: a Redis Cluster would need
all three on one node.

A Redis that cannot be reached (refused, or no answer within the timeout) makes every store call raise
:class:`ExperimentStoreUnavailable`, naming the address and what to do; it is also a ``redis.RedisError``
(``ConnectionError`` or ``TimeoutError``, like the error it replaces), so callers catching those keep working.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Literal

import redis
from pydantic import BaseModel

from experiments.config import Experiment
from foundation.clickhouse import redact_url
from foundation.errors import CamcountError
from foundation.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_PREFIX = "camcount"
ACTIVE_KEY = "{prefix}:experiment:active"
EXPERIMENT_KEY = "{prefix}:experiment:{name}"
HISTORY_KEY = "{prefix}:experiments:history"
RESERVED_NAMES = frozenset({"active"})
REDIS_TIMEOUT_S = 3.0
"""Connect and read/write timeout of the store's Redis client: ingestors consult it on their publish path."""

Clock = Callable[[], datetime]


class ExperimentStoreError(CamcountError, RuntimeError):
    """Base of experiment-store failures; the message says what to do."""

    code = "EXP_005"
    detail = "experiment-state"


class ExperimentAlreadyActive(ExperimentStoreError):
    """Another experiment is running; stop it before starting a new one."""


class ExperimentExists(ExperimentStoreError):
    """An experiment of that name already ran; its data would mix with the new one's."""


class ExperimentNotFound(ExperimentStoreError):
    """No experiment of that name was ever started."""

    detail = "experiment-not-found"


class ExperimentNotActive(ExperimentStoreError):
    """The experiment to stop is not the running one."""


class ExperimentStoreUnavailable(ExperimentStoreError, redis.RedisError):
    """The store's Redis cannot be reached; the message names its address, the remedy what to do.

    Raised as one of the two subclasses below, each also the redis-py error it replaces, so code that catches
    ``redis.RedisError`` (or its ``ConnectionError`` / ``TimeoutError``) keeps catching it.
    """

    code = "SYS_003"
    detail = "redis-unavailable"

    def __init__(self, message: str = "", *, remedy: str | None = None) -> None:
        super().__init__(message, remedy=remedy)
        # RedisError.__init__ is not reached through the builtin base; set what redis-py's errors carry.
        self.error_type = redis.exceptions.ExceptionType.NETWORK
        self.status_code = None

    def __repr__(self) -> str:  # RedisError's repr drops the message
        return Exception.__repr__(self)


class ExperimentStoreConnectionError(ExperimentStoreUnavailable, redis.ConnectionError):
    """The store's Redis refused or dropped the connection."""


class ExperimentStoreTimeout(ExperimentStoreUnavailable, redis.TimeoutError):
    """The store's Redis did not answer within the client's timeout."""


class HistoryEntry(BaseModel):
    at: datetime
    event: Literal["started", "stopped"]
    experiment: str
    reason: str | None = None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _address_of(client: Any) -> str:
    """Where ``client`` connects to, without credentials (``redis://host:port/db`` or ``unix://path``)."""
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", None) or {}
    if kwargs.get("path"):
        return f"unix://{kwargs['path']}"
    return f"redis://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


class ExperimentStore:
    """Start, stop and look up experiments in Redis (see the module docstring for keys and invariants)."""

    def __init__(self, redis_client: redis.Redis, clock: Clock = _utc_now, prefix: str = DEFAULT_PREFIX,
                 address: str | None = None) -> None:
        """``prefix`` starts every key (settings.redis.key_prefix), so several deployments can share a Redis;
        ``address`` (passwords redacted) names the Redis in errors, by default the client's host, port and db."""
        self.redis = redis_client
        self.clock = clock
        self.prefix = prefix
        self._address = address
        self._active_key = ACTIVE_KEY.format(prefix=prefix)
        self._history_key = HISTORY_KEY.format(prefix=prefix)

    @contextmanager
    def _reachable(self) -> Iterator[None]:
        """Turns redis-py's connection and timeout errors into :class:`ExperimentStoreUnavailable`."""
        try:
            yield
        except ExperimentStoreUnavailable:
            raise
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            kind = ExperimentStoreTimeout if isinstance(exc, redis.TimeoutError) else ExperimentStoreConnectionError
            address = self._address or _address_of(self.redis)
            raise kind(
                f"the experiment store's Redis at {address} cannot be reached "
                f"({type(exc).__name__}: {' '.join(str(exc).split())})",
                remedy="start it with `camcount stack up` or set REDIS_URL",
            ) from exc

    def start(self, experiment: Experiment) -> Experiment:
        """Record ``experiment`` as running from now and make it the active one; returns the stored state."""
        name = experiment.name
        if name in RESERVED_NAMES:
            raise ExperimentStoreError(f"experiment name {name!r} is reserved by the store's key layout; rename it")
        key = EXPERIMENT_KEY.format(prefix=self.prefix, name=name)
        now = self.clock()
        running = experiment.model_copy(
            update={"status": "running", "started_at": now, "stopped_at": None, "stop_reason": None}
        )
        entry = HistoryEntry(at=now, event="started", experiment=name)

        def write(pipe: redis.client.Pipeline) -> None:
            active = pipe.get(self._active_key)
            if active is not None:
                raise ExperimentAlreadyActive(
                    f"experiment {_text(active)!r} is running; stop it (ExperimentStore.stop) before starting "
                    f"{name!r}: only one experiment runs at a time"
                )
            if pipe.exists(key):
                raise ExperimentExists(
                    f"experiment {name!r} already ran; start it under a new name so its data stays separate"
                )
            pipe.multi()
            pipe.set(self._active_key, name)
            pipe.set(key, running.model_dump_json())
            pipe.rpush(self._history_key, entry.model_dump_json())

        with self._reachable():
            self.redis.transaction(write, self._active_key, key)
        logger.info("experiment %s started with variants %s", name, running.variant_names)
        return running

    def stop(self, name: str, reason: str) -> Experiment:
        """Stop the running experiment ``name`` with ``reason``; returns the stored, stopped state."""
        key = EXPERIMENT_KEY.format(prefix=self.prefix, name=name)
        stopped: list[Experiment] = []

        def write(pipe: redis.client.Pipeline) -> None:
            active = pipe.get(self._active_key)
            if active is None or _text(active) != name:
                running = "none is running" if active is None else f"{_text(active)!r} is running"
                raise ExperimentNotActive(f"cannot stop {name!r}: it is not the active experiment ({running})")
            now = self.clock()
            experiment = self._load(pipe.get(key), name).model_copy(
                update={"status": "stopped", "stopped_at": now, "stop_reason": reason}
            )
            pipe.multi()
            pipe.delete(self._active_key)
            pipe.set(key, experiment.model_dump_json())
            pipe.rpush(self._history_key, HistoryEntry(at=now, event="stopped", experiment=name,
                                                 reason=reason).model_dump_json())
            stopped[:] = [experiment]

        with self._reachable():
            self.redis.transaction(write, self._active_key, key)
        logger.info("experiment %s stopped: %s", name, reason)
        return stopped[0]

    def active(self) -> Experiment | None:
        """The running experiment, or None."""
        with self._reachable():
            name = self.redis.get(self._active_key)
        return None if name is None else self.get(_text(name))

    def get(self, name: str) -> Experiment:
        """The stored state of experiment ``name``, running or stopped."""
        with self._reachable():
            raw = self.redis.get(EXPERIMENT_KEY.format(prefix=self.prefix, name=name))
        return self._load(raw, name)

    def history(self) -> list[HistoryEntry]:
        """Every start and stop, oldest first."""
        with self._reachable():
            raws = self.redis.lrange(self._history_key, 0, -1)
        return [HistoryEntry.model_validate_json(_text(raw)) for raw in raws]

    @classmethod
    def for_settings(cls, settings: Settings) -> "ExperimentStore":
        """The store of the deployment ``settings`` describe (their Redis and key prefix).

        A Redis that does not answer fails calls within ``REDIS_TIMEOUT_S`` instead of blocking them.
        """
        url = settings.redis_url()
        client = redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S)
        return cls(client, prefix=settings.redis.key_prefix, address=redact_url(url))

    @staticmethod
    def _load(raw: bytes | str | None, name: str) -> Experiment:
        if raw is None:
            raise ExperimentNotFound(f"no experiment {name!r} was ever started; check the name")
        return Experiment.model_validate_json(_text(raw))
