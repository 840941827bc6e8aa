"""The result cache over real HTTP: a repeated request is answered from Redis, and a promotion (a new version behind
the same reference) is never answered from the old version's entries."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
import redis

from models.registry import ModelRegistry
from tests.services import PROMO_MODEL, ApiServer

pytestmark = pytest.mark.integration


def _infer(api_server: ApiServer, model: str, jpeg: bytes) -> dict:
    response = httpx.post(f"{api_server.url}/api/v1/models/{model}/inference", content=jpeg,
                          headers={**api_server.headers("viewer"), "Content-Type": "image/jpeg"}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def _cache_hits(api_server: ApiServer) -> float:
    text = httpx.get(f"{api_server.url}/metrics", timeout=10).text
    match = re.search(r'^camcount_api_cache_lookups_total\{result="hit"\} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def test_a_repeated_request_is_a_cache_hit_with_the_same_result(api_server: ApiServer,
                                                                vtest_jpegs: list[bytes]) -> None:
    first = _infer(api_server, "yolov4-tiny", vtest_jpegs[0] + b"\x00")  # bytes no other test sends
    hits_before = _cache_hits(api_server)

    second = _infer(api_server, "yolov4-tiny", vtest_jpegs[0] + b"\x00")

    assert (first["cached"], second["cached"]) == (False, True)
    assert second["results"] == first["results"] and second["inferenceId"] != first["inferenceId"]
    assert _cache_hits(api_server) == hits_before + 1


def test_cache_entries_are_keyed_by_model_version_and_expire(api_server: ApiServer, vtest_jpegs: list[bytes],
                                                             redis_client: redis.Redis) -> None:
    _infer(api_server, "yolov4-tiny", vtest_jpegs[1] + b"\x00\x00")
    prefix = api_server.settings.redis.key_prefix

    keys = [k.decode() for k in redis_client.scan_iter(f"{prefix}:result:yolov4-tiny:*", count=1000)]

    assert keys and all(re.fullmatch(rf"{re.escape(prefix)}:result:yolov4-tiny:1\.0\.0:[0-9a-f]{{64}}:[0-9a-f]{{16}}",
                                     key) for key in keys)
    assert 0 < redis_client.ttl(keys[0]) <= api_server.settings.api.cache_ttl_s


def test_a_promotion_makes_the_next_call_a_miss_on_the_new_version(api_server: ApiServer,
                                                                   vtest_jpegs: list[bytes]) -> None:
    registry = ModelRegistry(Path(api_server.settings.model.registry))
    jpeg = vtest_jpegs[2] + b"\x00\x00\x00"
    before = _infer(api_server, PROMO_MODEL, jpeg)
    assert _infer(api_server, PROMO_MODEL, jpeg)["cached"]
    registry.promote(PROMO_MODEL, "2.0.0")
    try:
        after = _infer(api_server, PROMO_MODEL, jpeg)
    finally:
        registry.promote(PROMO_MODEL, "1.0.0")

    assert (before["version"], after["version"]) == ("1.0.0", "2.0.0")
    assert not after["cached"]
    assert after["results"] == before["results"]  # the same weights under another version
