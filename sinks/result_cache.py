"""Redis cache of inference results, keyed by what determines a result: model version, image bytes and options.

Keys (``camcount`` is settings.redis.key_prefix)::

  camcount:result:{model}:{version}:{sha256(image)}:{options hash}   string  the result (JSON)      (cache_ttl_s)
  camcount:result-index                                               zset    entry key -> stored at (ms)

Invariants: a key names one model version, so a promotion (the same model reference now resolving to another
version) can never be answered from an entry of the version before it; an entry lives ``ttl_s`` at most; at most
``max_entries`` entries exist, since every store evicts the oldest beyond that (one Lua script, atomic). The index
and its entries live in one Redis (not a cluster: the script touches keys it does not declare).

The cache is an optimisation, never a dependency: every call goes through a circuit breaker and any Redis failure
(or an open breaker) reads as a miss and skips the store, so a Redis outage costs inference time, not errors.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import pybreaker
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

log = logging.getLogger(__name__)

TIMEOUT_S = 0.5
Lookup = Literal["hit", "miss", "error"]

# KEYS: entry, index; ARGV: value, ttl s, now ms, max entries. Stores the entry, forgets index members that
# expired, then evicts the oldest entries beyond max. Returns how many were evicted.
_STORE = """
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], KEYS[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', tonumber(ARGV[3]) - tonumber(ARGV[2]) * 1000)
local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if excess > 0 then
  local oldest = redis.call('ZRANGE', KEYS[2], 0, excess - 1)
  for i = 1, #oldest do redis.call('DEL', oldest[i]) end
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, excess - 1)
end
redis.call('EXPIRE', KEYS[2], ARGV[2])
return math.max(excess, 0)
"""


def image_digest(image: bytes) -> str:
    return hashlib.sha256(image).hexdigest()


def options_digest(options: Mapping[str, Any]) -> str:
    """A short, stable hash of the effective options (key order does not matter)."""
    return hashlib.sha256(json.dumps(options, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def result_key(prefix: str, model: str, version: str, image_sha256: str, options_hash: str) -> str:
    return f"{prefix}:result:{model}:{version}:{image_sha256}:{options_hash}"


def index_key(prefix: str) -> str:
    return f"{prefix}:result-index"


class ResultCache:
    """Get and put inference results in Redis (see the module docstring); ``on_lookup`` hears every lookup's
    outcome (``hit``, ``miss``, or ``error`` when Redis failed or the breaker is open, which also counts as a
    miss for the caller)."""

    def __init__(self, client: aioredis.Redis, prefix: str, ttl_s: int, max_entries: int,
                 breaker: pybreaker.CircuitBreaker, on_lookup: Callable[[Lookup], None] | None = None) -> None:
        self._redis = client
        self._prefix = prefix
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._breaker = breaker
        self._on_lookup = on_lookup or (lambda _: None)
        self._store = client.register_script(_STORE)

    @classmethod
    def connect(cls, url: str, prefix: str, ttl_s: int, max_entries: int, breaker: pybreaker.CircuitBreaker,
                on_lookup: Callable[[Lookup], None] | None = None) -> ResultCache:
        client = aioredis.from_url(url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S,
                                   retry=Retry(NoBackoff(), retries=0))
        return cls(client, prefix, ttl_s, max_entries, breaker, on_lookup)

    @property
    def enabled(self) -> bool:
        return self.ttl_s > 0

    def key(self, model: str, version: str, image_sha256: str, options_hash: str) -> str:
        return result_key(self._prefix, model, version, image_sha256, options_hash)

    async def get_many(self, keys: Sequence[str]) -> list[Any | None]:
        """The cached result of each key (decoded JSON), None for a miss; all None when Redis is unusable."""
        if not self.enabled or not keys:
            return [None] * len(keys)
        try:
            with self._breaker.calling():
                raw = await self._redis.mget(list(keys))
        except Exception as exc:  # noqa: BLE001 - redis errors, timeouts, an open breaker: all a miss
            log.debug("result cache lookup failed (%s); answering as a miss", exc)
            for _ in keys:
                self._on_lookup("error")
            return [None] * len(keys)
        found = []
        for value in raw:
            self._on_lookup("miss" if value is None else "hit")
            found.append(None if value is None else json.loads(value))
        return found

    async def put(self, key: str, result: Any) -> None:
        """Store ``result`` (JSON-serialisable) under ``key``; a failure is logged at debug level and forgotten."""
        if not self.enabled:
            return
        value = json.dumps(result, separators=(",", ":"))
        try:
            with self._breaker.calling():
                await self._store(keys=[key, index_key(self._prefix)],
                                  args=[value, self.ttl_s, int(time.time() * 1000), self.max_entries])
        except Exception as exc:  # noqa: BLE001 - as in get_many
            log.debug("result cache store failed (%s); not cached", exc)

    async def close(self) -> None:
        await self._redis.aclose()
