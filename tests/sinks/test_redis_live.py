"""Redis live state against the real Redis of the session stack: crossings add to today's line totals exactly
once, and a Redis that hangs fails a live update within seconds instead of stalling the counting agent."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from sinks.redis_live import TIMEOUT_S, AsyncLiveState, LiveCrossingTotals, line_key, read_camera

pytestmark = [pytest.mark.integration]

CAPTURE_TS_MS = 1_700_000_000_000


def _crossing(event_id: str, direction: str = "in", class_name: str = "person") -> dict:
    return {"event_id": event_id, "camera_id": "cam", "line": "L", "capture_ts_ms": CAPTURE_TS_MS,
            "direction": direction, "class_name": class_name}


@pytest.fixture
def prefix(redis_client: redis.Redis) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    yield prefix
    leftovers = redis_client.keys(f"{prefix}:*")
    if leftovers:
        redis_client.delete(*leftovers)


def _totals(client: redis.Redis, prefix: str) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in client.hgetall(line_key(prefix, "cam", "L", CAPTURE_TS_MS)).items()}


def test_replayed_crossings_are_added_to_the_line_totals_once(stack_settings, redis_client, prefix):
    totals = LiveCrossingTotals(stack_settings.redis_url(), prefix)
    batch = [_crossing("a"), _crossing("b", "out", "car")]
    assert totals.add(batch) == 2
    assert totals.add(batch) == 0
    assert _totals(redis_client, prefix) == {"in": 1, "in:person": 1, "out": 1, "out:car": 1}


def test_a_batch_retried_after_a_partial_write_adds_only_the_crossings_not_yet_added(stack_settings, redis_client,
                                                                                      prefix):
    totals = LiveCrossingTotals(stack_settings.redis_url(), prefix)
    totals.add([_crossing("a")])  # the first attempt got this far
    assert totals.add([_crossing("a"), _crossing("b")]) == 1
    assert _totals(redis_client, prefix) == {"in": 2, "in:person": 2}


def test_line_totals_and_event_markers_expire(stack_settings, redis_client, prefix):
    LiveCrossingTotals(stack_settings.redis_url(), prefix).add([_crossing("a")])
    assert redis_client.ttl(line_key(prefix, "cam", "L", CAPTURE_TS_MS)) > 0
    assert redis_client.ttl(f"{prefix}:event:a") > 0


@pytest.mark.parametrize("flag", ["stream_ended", "silence_ended"])
def test_a_camera_s_live_state_says_how_its_tracks_ended_until_its_next_frame(stack_settings, redis_client, prefix,
                                                                               flag):
    """``stream_ended``: its ingest's end-of-stream marker; ``silence_ended``: the counting app's, for its silence."""
    camera = f"cam-{flag}"

    async def counted(seq: int, ended: bool) -> None:
        live = AsyncLiveState(stack_settings.redis_url(), prefix)
        try:
            await live.frame_counted(camera, seq, CAPTURE_TS_MS, {}, **{flag: ended})
        finally:
            await live.close()

    asyncio.run(counted(7, True))
    state = read_camera(redis_client, prefix, camera)
    assert (state["last_frame_seq"], state["stream_ended"], state["silence_ended"]) == (
        7, int(flag == "stream_ended"), int(flag == "silence_ended"))
    asyncio.run(counted(8, False))
    state = read_camera(redis_client, prefix, camera)
    assert (state["stream_ended"], state["silence_ended"]) == (0, 0)


def test_a_redis_that_never_answers_fails_a_live_update_within_seconds():
    async def update(url: str) -> None:
        live = AsyncLiveState(url, "test")
        try:  # the outer bound only keeps this test from hanging where there is no client timeout
            await asyncio.wait_for(live.frame_counted("cam", 1, CAPTURE_TS_MS, {}), timeout=10 * TIMEOUT_S)
        finally:
            await live.close()

    with socket.socket() as hung:  # accepts connections (kernel backlog) and never replies
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)
        started = time.monotonic()
        with pytest.raises(redis.exceptions.TimeoutError):
            asyncio.run(update(f"redis://127.0.0.1:{hung.getsockname()[1]}/0"))
        assert time.monotonic() - started < 2 * TIMEOUT_S + 1
