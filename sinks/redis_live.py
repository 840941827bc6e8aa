"""Live state in Redis for dashboards and the API: never the source of truth (ClickHouse is), always expiring.

Keys (``camcount`` is settings.redis.key_prefix):
  camcount:camera:{camera}                  hash  last_frame_seq, last_capture_ts_ms, updated_ms,    (1 day)
                                                  stream_ended (1 once the camera's end marker is counted),
                                                  silence_ended (1 once the marker sent for its silence is)
  camcount:zone:{camera}:{zone}             hash  class -> current occupancy                          (1 hour)
  camcount:line:{camera}:{line}:{YYYYMMDD}  hash  in, out, in:{class}, out:{class} -> today's count    (2 days)
  camcount:event:{event_id}                 marks a crossing already added, so replays add nothing  (2 days)

A crossing is marked and added to its line's totals in one Lua script, which Redis runs atomically: an event
is marked if and only if it was added, whatever fails or is retried. Clients time out after
``TIMEOUT_S`` on connecting and on each reply, so a hung Redis cannot stall the counting agent or the sink.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff

from foundation.errors import ServiceUnavailable

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
        self, camera_id: str, frame_seq: int, capture_ts_ms: int, zones: dict[str, dict[str, int]],
        stream_ended: bool = False, silence_ended: bool = False,
    ) -> None:
        """Record the camera's latest counted frame (``stream_ended``: its ingest's end-of-stream marker,
        ``silence_ended``: the one the counting app sent for its silence) and zones."""
        now_ms = int(datetime.now(tz=timezone.utc).timestamp() * 1000)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(camera_key(self._prefix, camera_id), mapping={
                "last_frame_seq": frame_seq, "last_capture_ts_ms": capture_ts_ms, "updated_ms": now_ms,
                "stream_ended": int(stream_ended), "silence_ended": int(silence_ended)})
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


class LiveStateUnavailable(ServiceUnavailable):
    """The live state's Redis cannot be reached (refused, or no answer within ``TIMEOUT_S``)."""

    code = "SYS_003"
    detail = "live-state-unavailable"


@contextmanager
def reachable(client: redis.Redis) -> Iterator[None]:
    """Turns redis-py's connection and timeout errors into :class:`LiveStateUnavailable`, naming the address."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        kwargs = client.connection_pool.connection_kwargs
        raise LiveStateUnavailable(
            f"the live state's Redis at {kwargs.get('host', '?')}:{kwargs.get('port', '?')} cannot be reached "
            f"({type(exc).__name__})", remedy="start it (`camcount stack up`) or set REDIS_URL") from exc


def _glob_escape(text: str) -> str:
    """``text`` with Redis glob characters escaped, for a SCAN MATCH pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _scan(client: redis.Redis, pattern: str) -> list[str]:
    return sorted(key.decode() if isinstance(key, bytes) else key
                  for key in client.scan_iter(match=pattern, count=1000))


def live_cameras(client: redis.Redis, prefix: str) -> list[str]:
    """Cameras with live state (a frame counted within ``CAMERA_TTL_S``), sorted."""
    start = f"{prefix}:camera:"
    return [key[len(start):] for key in _scan(client, _glob_escape(start) + "*")]


def _owner(rest: str, cameras: list[str]) -> tuple[str, str] | None:
    """``(camera, remainder)`` for ``rest`` = ``{camera}:{remainder}``: the longest known camera id that fits, since
    camera ids and zone or line names may themselves hold ':'."""
    for camera in sorted(cameras, key=len, reverse=True):
        if rest.startswith(camera + ":"):
            return camera, rest[len(camera) + 1:]
    return None


def last_frames(client: redis.Redis, prefix: str, cameras: list[str]) -> dict[str, dict[str, int]]:
    """Per camera of ``cameras``, its last counted frame: ``last_frame_seq``, ``last_capture_ts_ms``, ``updated_ms``,
    ``stream_ended``, ``silence_ended`` (empty when Redis holds none)."""
    with client.pipeline(transaction=False) as pipe:
        for camera in cameras:
            pipe.hgetall(camera_key(prefix, camera))
        return {camera: {k.decode(): int(v) for k, v in raw.items()}
                for camera, raw in zip(cameras, pipe.execute(), strict=True)}


def read_live(client: redis.Redis, prefix: str, cameras: list[str], day: str) -> dict[str, dict[str, Any]]:
    """Live state of ``cameras``: per camera its last counted frame (:func:`last_frames`), ``zones`` (zone -> class
    -> current occupancy) and ``lines`` (line -> ``in``/``out``/``in:{class}``/``out:{class}`` -> count) of UTC day
    ``day`` (YYYYMMDD). Scans the zone and line keys of the prefix: meant for dashboards, not per frame."""
    wanted = set(cameras)
    known = sorted(set(live_cameras(client, prefix)) | wanted)
    state: dict[str, dict[str, Any]] = {camera: {**frame, "zones": {}, "lines": {}}
                                        for camera, frame in last_frames(client, prefix, cameras).items()}
    for kind, suffix in (("zone", ""), ("line", f":{day}")):
        start = f"{prefix}:{kind}:"
        keys = []
        for key in _scan(client, _glob_escape(start) + "*" + _glob_escape(suffix)):
            owned = _owner(key[len(start):len(key) - len(suffix)], known)
            if owned is not None and owned[0] in wanted:
                keys.append((key, *owned))
        with client.pipeline(transaction=False) as pipe:
            for key, _, _ in keys:
                pipe.hgetall(key)
            for (_, camera, name), raw in zip(keys, pipe.execute(), strict=True):
                if raw:
                    state[camera][f"{kind}s"][name] = {k.decode(): int(v) for k, v in raw.items()}
    return state
