"""Model management over real HTTP: list, show, verify, and a promote that moves the alias on disk and writes exactly
one audit row naming the key, the client and the aliases before and after."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from models.registry import ModelRegistry
from tests.services import PROMO_MODEL, ApiServer

pytestmark = pytest.mark.integration


def _registry(api_server: ApiServer) -> ModelRegistry:
    return ModelRegistry(Path(api_server.settings.model.registry))


def _audit(api_server: ApiServer, since: datetime, **filters: str) -> list[dict]:
    response = httpx.get(f"{api_server.url}/api/v1/audit", headers=api_server.headers("admin"), timeout=30,
                         params={"from": since.isoformat(), **filters})
    assert response.status_code == 200, response.text
    return response.json()["records"]


def test_list_and_show_describe_the_registry(api_server: ApiServer) -> None:
    headers = api_server.headers("ml_engineer")

    listed = httpx.get(f"{api_server.url}/api/v1/models", headers=headers, timeout=30).json()["models"]
    shown = httpx.get(f"{api_server.url}/api/v1/models/{PROMO_MODEL}@2.0.0", headers=headers, timeout=30).json()

    promo = next(m for m in listed if m["name"] == PROMO_MODEL)
    assert [v["version"] for v in promo["versions"]] == ["1.0.0", "2.0.0"]
    assert promo["aliases"]["production"] == _registry(api_server).aliases(PROMO_MODEL)["production"]
    assert (shown["name"], shown["version"], shown["manifest"]["version"]) == (PROMO_MODEL, "2.0.0", "2.0.0")
    missing = httpx.get(f"{api_server.url}/api/v1/models/{PROMO_MODEL}@7.7.7", headers=headers, timeout=30)
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "MODEL_001")


def test_verify_checks_the_weights(api_server: ApiServer) -> None:
    response = httpx.post(f"{api_server.url}/api/v1/models/{PROMO_MODEL}@1.0.0/verify",
                          headers=api_server.headers("ml_engineer"), timeout=30)

    assert response.status_code == 200 and response.json()["ok"] is True and response.json()["problem"] is None


def test_promote_over_http_moves_the_alias_and_writes_one_audit_row(api_server: ApiServer) -> None:
    registry = _registry(api_server)
    before = registry.aliases(PROMO_MODEL)
    assert before["production"] == "1.0.0"
    started = datetime.now(UTC).replace(microsecond=0)
    time.sleep(0.01)

    promoted = httpx.post(f"{api_server.url}/api/v1/models/{PROMO_MODEL}/promote",
                          json={"version": "2.0.0", "reason": "int8 won"},
                          headers=api_server.headers("ml_engineer"), timeout=30)
    try:
        assert promoted.status_code == 200, promoted.text
        assert registry.aliases(PROMO_MODEL)["production"] == "2.0.0"
        assert promoted.json() == {"name": PROMO_MODEL, "alias": "production", "version": "2.0.0", "before": before,
                                   "after": {"production": "2.0.0", "previous": "1.0.0"}}
        (row,) = _audit(api_server, started, action="model.promote", target=PROMO_MODEL)
        assert (row["actor"], row["actorId"], row["actorKind"], row["source"], row["client"]) == (
            "test ml_engineer", "key-ml_engineer", "api-key", "api", "127.0.0.1")
        assert (row["result"], row["reason"]) == ("ok", "int8 won")
        assert row["before"] == {"aliases": before}
        assert row["after"] == {"aliases": {"production": "2.0.0", "previous": "1.0.0"}}
    finally:
        rolled = httpx.post(f"{api_server.url}/api/v1/models/{PROMO_MODEL}/rollback",
                            headers=api_server.headers("admin"), timeout=30)
    assert rolled.status_code == 200 and rolled.json()["version"] == "1.0.0"
    assert registry.aliases(PROMO_MODEL)["production"] == "1.0.0"
    (rollback,) = _audit(api_server, started, action="model.rollback", target=PROMO_MODEL)
    assert rollback["actor"] == "test admin" and rollback["after"]["aliases"]["production"] == "1.0.0"


def test_a_refused_promote_is_audited_as_an_error(api_server: ApiServer) -> None:
    started = datetime.now(UTC).replace(microsecond=0)

    response = httpx.post(f"{api_server.url}/api/v1/models/{PROMO_MODEL}/promote", json={"version": "7.7.7"},
                          headers=api_server.headers("ml_engineer"), timeout=30)

    assert (response.status_code, response.json()["error"]["code"]) == (404, "MODEL_001")
    (row,) = _audit(api_server, started, action="model.promote", target=PROMO_MODEL, result="error")
    assert row["errorCode"] == "MODEL_001" and row["before"] == row["after"]


@pytest.mark.parametrize("body", [{}, {"version": "2.0.0", "bogus": 1}, {"version": 2}])
def test_a_malformed_promote_body_is_a_4xx_with_a_code(api_server: ApiServer, body: dict) -> None:
    response = httpx.post(f"{api_server.url}/api/v1/models/{PROMO_MODEL}/promote", json=body,
                          headers=api_server.headers("ml_engineer"), timeout=30)

    assert response.status_code == 422 and response.json()["error"]["code"] == "INF_001"
    assert _registry(api_server).aliases(PROMO_MODEL)["production"] == "1.0.0"
