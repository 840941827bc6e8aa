"""Live state in Redis for dashboards and the API: never the source of truth (ClickHouse is), always expiring.

Keys (``camcount`` is settings.redis.key_prefix):
  camcount:camera:{camera}                  hash  last_frame_seq, last_capture_ts_ms, updated_ms     (1 day)
  camcount:zone:{camera}:{zone}             hash  class -> current occupancy                          (1 hour)
  camcount:line:{camera}:{line}:{YYYYMMDD}  hash  in, out, in:{class}, out:{class} -> today's count    (2 days)
  camcount:event:{event_id}                 marks a crossing already added, so replays add nothing  (2 days)
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import redis
import redis.asyncio as aioredis

CAMERA_TTL_S = 24 * 3600
ZONE_TTL_S = 3600
LINE_TTL_S = 2 * 24 * 3600


def camera_key(prefix: str, camera_id: str) -> str:
    return f"{prefix}:camera:{camera_id}"


def zone_key(prefix: str, camera_id: str, zone: str) -> str:
    return f"{prefix}:zone:{camera_id}:{zone}"


def line_key(prefix: str, camera_id: str, line: str, capture_ts_ms: int) -> str:
    day = datetime.fromtimestamp(capture_ts_ms / 1000, tz=timezone.utc).strftime("%Y%m%d")
    return f"{prefix}:line:{camera_id}:{line}:{day}"


class AsyncLiveState:
    """Written by the counting app after each frame."""

    def __init__(self, url: str, prefix: str) -> None:
        self._redis = aioredis.from_url(url)
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
        self._redis = redis.Redis.from_url(url)
        self._prefix = prefix

    def add(self, crossings: list[dict[str, Any]]) -> None:
        if not crossings:
            return
        with self._redis.pipeline(transaction=False) as pipe:
            for c in crossings:
                pipe.set(f"{self._prefix}:event:{c['event_id']}", 1, nx=True, ex=LINE_TTL_S)
            first_time = pipe.execute()
        with self._redis.pipeline(transaction=False) as pipe:
            for c, new in zip(crossings, first_time):
                if not new:
                    continue
                key = line_key(self._prefix, c["camera_id"], c["line"], c["capture_ts_ms"])
                pipe.hincrby(key, c["direction"], 1)
                pipe.hincrby(key, f"{c['direction']}:{c['class_name']}", 1)
                pipe.expire(key, LINE_TTL_S)
            pipe.execute()


def read_camera(client: redis.Redis, prefix: str, camera_id: str) -> dict[str, int]:
    raw = client.hgetall(camera_key(prefix, camera_id))
    return {k.decode(): int(v) for k, v in raw.items()}
