"""Live state in Redis for dashboards and the API: never the source of truth (ClickHouse is), always expiring.

Keys (``camcount`` is settings.redis.key_prefix):
  camcount:camera:{camera}                  hash  last_frame_seq, last_capture_ts_ms, updated_ms     (1 day)
  camcount:zone:{camera}:{zone}             hash  class -> current occupancy                          (1 hour)
  camcount:line:{camera}:{line}:{YYYYMMDD}  hash  in, out, in:{class}, out:{class} -> today's count    (2 days)
  camcount:event:{event_id}                 marks a crossing already added, so replays add nothing  (2 days)

A crossing is marked and added to its line's totals in one Lua script, which Redis runs atomically: an event
is marked if and only if it was added, whatever fails or is retried. Clients time out after
``TIMEOUT_S`` on connecting and on each reply, so a hung Redis cannot stall the counting agent or the sink.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff

CAMERA_TTL_S = 24 * 3600
ZONE_TTL_S = 3600
LINE_TTL_S = 2 * 24 * 3600
TIMEOUT_S = 2.0

# KEYS: event marker, line totals; ARGV: direction, direction:class, TTL. Returns 1 if added, 0 if already added.
_ADD_ONCE = """
if not redis.call('SET', KEYS[1], 1, 'NX', 'EX', ARGV[3]) then
  return 0
end
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
"""


def event_key(prefix: str, event_id: str) -> str:
    """The mark of a crossing already added to the live totals."""
    return f"{prefix}:event:{event_id}"


def camera_key(prefix: str, camera_id: str) -> str:
    return f"{prefix}:camera:{camera_id}"


def zone_key(prefix: str, camera_id: str, zone: str) -> str:
    return f"{prefix}:zone:{camera_id}:{zone}"


def line_key(prefix: str, camera_id: str, line: str, capture_ts_ms: int) -> str:
    day = datetime.fromtimestamp(capture_ts_ms / 1000, tz=timezone.utc).strftime("%Y%m%d")
    return f"{prefix}:line:{camera_id}:{line}:{day}"


class AsyncLiveState:
    """Written by the counting app after each frame. Best effort: a call that fails is not retried, since the
    next frame overwrites the same keys."""

    def __init__(self, url: str, prefix: str) -> None:
        self._redis = aioredis.from_url(url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S,
                                        retry=AsyncRetry(NoBackoff(), retries=0))
        self._prefix = prefix

    async def frame_counted(
        self, camera_id: str, frame_seq: int, capture_ts_ms: int, zones: dict[str, dict[str, int]]
    ) -> None:
        now_ms = int(datetime.now(tz=timezone.utc).timestamp() * 1000)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(camera_key(self._prefix, camera_id), mapping={
                "last_frame_seq": frame_seq, "last_capture_ts_ms": capture_ts_ms, "updated_ms": now_ms})
            pipe.expire(camera_key(self._prefix, camera_id), CAMERA_TTL_S)
            for zone, occupancy in zones.items():
                key = zone_key(self._prefix, camera_id, zone)
                pipe.delete(key)
                if occupancy:
                    pipe.hset(key, mapping=occupancy)
                    pipe.expire(key, ZONE_TTL_S)
            await pipe.execute()

    async def close(self) -> None:
        await self._redis.aclose()


class LiveCrossingTotals:
    """Adds crossings to today's per-line totals, each event at most once (the sink calls it per batch)."""

    def __init__(self, url: str, prefix: str) -> None:
        self._redis = redis.Redis.from_url(url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S)
        self._prefix = prefix
        self._add_once = self._redis.register_script(_ADD_ONCE)

    def add(self, crossings: list[dict[str, Any]]) -> int:
        """Add each crossing not added before; returns how many were new. Safe to repeat after any failure."""
        if not crossings:
            return 0
        with self._redis.pipeline(transaction=False) as pipe:
            for c in crossings:
                keys = [event_key(self._prefix, c["event_id"]),
                        line_key(self._prefix, c["camera_id"], c["line"], c["capture_ts_ms"])]
                self._add_once(keys, [c["direction"], f"{c['direction']}:{c['class_name']}", LINE_TTL_S], client=pipe)
            return sum(pipe.execute())


def read_camera(client: redis.Redis, prefix: str, camera_id: str) -> dict[str, int]:
    raw = client.hgetall(camera_key(prefix, camera_id))
    return {k.decode(): int(v) for k, v in raw.items()}
