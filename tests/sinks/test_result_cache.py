"""The Redis result cache: keyed by version, bounded, expiring, and a miss (never an error) while Redis is away."""

from __future__ import annotations

import asyncio
import uuid

import pybreaker
import pytest
import redis

from foundation.resilience import ResilienceSettings, circuit_breaker
from foundation.settings import Settings
from sinks.result_cache import ResultCache, index_key, options_digest


def _cache(url: str, prefix: str, ttl_s: int = 60, max_entries: int = 100,
           outcomes: list[str] | None = None, failures: int = 5) -> ResultCache:
    breaker = circuit_breaker(f"test-cache-{uuid.uuid4().hex[:6]}",
                              ResilienceSettings(breaker_failures=failures, breaker_reset_s=60))
    return ResultCache.connect(url, prefix, ttl_s, max_entries, breaker,
                               on_lookup=(outcomes.append if outcomes is not None else None))


def test_options_hash_ignores_key_order() -> None:
    assert options_digest({"conf": 0.3, "iou": None}) == options_digest({"iou": None, "conf": 0.3})
    assert options_digest({"conf": 0.3}) != options_digest({"conf": 0.31})


@pytest.mark.integration
def test_a_stored_result_is_found_again_under_its_version_only(stack_settings: Settings) -> None:
    prefix, outcomes = f"test-{uuid.uuid4().hex[:8]}", []
    cache = _cache(stack_settings.redis_url(), prefix, outcomes=outcomes)

    async def scenario() -> list:
        await cache.put(cache.key("m", "1.0.0", "ab" * 32, "o"), {"detections": [1]})
        found = await cache.get_many([cache.key("m", "1.0.0", "ab" * 32, "o"), cache.key("m", "2.0.0", "ab" * 32, "o")])
        await cache.close()
        return found

    assert asyncio.run(scenario()) == [{"detections": [1]}, None]
    assert outcomes == ["hit", "miss"]


@pytest.mark.integration
def test_the_cache_keeps_at_most_max_entries_evicting_the_oldest(stack_settings: Settings,
                                                                  redis_client: redis.Redis) -> None:
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    cache = _cache(stack_settings.redis_url(), prefix, ttl_s=30, max_entries=3)
    keys = [cache.key("m", "1.0.0", f"{i:064x}", "o") for i in range(5)]

    async def scenario() -> list:
        for key in keys:
            await cache.put(key, {"i": key})
            await asyncio.sleep(0.002)
        found = await cache.get_many(keys)
        await cache.close()
        return found

    found = asyncio.run(scenario())

    assert [f is not None for f in found] == [False, False, True, True, True]
    assert redis_client.zcard(index_key(prefix)) == 3
    assert 0 < redis_client.ttl(keys[-1]) <= 30


def test_with_redis_away_lookups_are_misses_stores_are_skipped_and_the_breaker_opens() -> None:
    outcomes: list[str] = []
    cache = _cache("redis://127.0.0.1:1/0", "x", outcomes=outcomes, failures=2)

    async def scenario() -> list:
        results = [await cache.get_many(["x:result:a"]) for _ in range(3)]
        await cache.put("x:result:a", {"detections": []})
        return results

    assert asyncio.run(scenario()) == [[None]] * 3
    assert outcomes == ["error"] * 3
    assert cache._breaker.current_state == pybreaker.STATE_OPEN


def test_a_zero_ttl_disables_the_cache() -> None:
    cache = _cache("redis://127.0.0.1:1/0", "x", ttl_s=0)

    assert not cache.enabled and asyncio.run(cache.get_many(["a", "b"])) == [None, None]
