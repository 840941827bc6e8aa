"""A/B experiments over real HTTP: start from a JSON definition (the YAML file's schema), status, report, stop,
each change audited with the calling key."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx
import pytest

from tests.services import PROMO_MODEL, ApiServer

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def no_running_experiment(api_server: ApiServer) -> None:
    """The server is shared: another test (the OpenAPI fuzzer, with the documented example) may have started one."""
    headers = api_server.headers("ml_engineer")
    active = httpx.get(f"{api_server.url}/api/v1/experiments", headers=headers, timeout=30).json()["active"]
    if active is not None:
        stopped = httpx.post(f"{api_server.url}/api/v1/experiments/{active['name']}/stop", headers=headers,
                             timeout=30)
        assert stopped.status_code == 200, stopped.text


def _definition(name: str, candidate: str = "2.0.0") -> dict:
    return {"name": name, "min_samples_per_variant": 10,
            "variants": [{"name": "control", "model": f"{PROMO_MODEL}@1.0.0"},
                         {"name": "candidate", "model": f"{PROMO_MODEL}@{candidate}", "weight": 2}]}


def test_start_status_report_and_stop(api_server: ApiServer) -> None:
    url, headers = api_server.url, api_server.headers("ml_engineer")
    name = f"api-{uuid.uuid4().hex[:8]}"
    started_at = datetime.now(UTC).replace(microsecond=0)

    started = httpx.post(f"{url}/api/v1/experiments", json=_definition(name), headers=headers, timeout=30)
    try:
        assert started.status_code == 201, started.text
        assert (started.json()["name"], started.json()["status"]) == (name, "running")
        status = httpx.get(f"{url}/api/v1/experiments", headers=headers, timeout=30).json()
        assert status["active"]["name"] == name
        assert status["history"][-1]["event"] == "started" and status["history"][-1]["experiment"] == name
        shown = httpx.get(f"{url}/api/v1/experiments/{name}", headers=headers, timeout=30).json()
        assert [v["name"] for v in shown["variants"]] == ["control", "candidate"]
        report = httpx.get(f"{url}/api/v1/experiments/{name}/report", headers=headers, timeout=30)
        assert report.status_code == 200, report.text
        assert report.json()["experiment"] == name and report.json()["decision"]
        again = httpx.post(f"{url}/api/v1/experiments", json=_definition(f"{name}-2"), headers=headers, timeout=30)
        assert (again.status_code, again.json()["error"]["code"]) == (409, "EXP_005")
    finally:
        stopped = httpx.post(f"{url}/api/v1/experiments/{name}/stop", json={"reason": "test over"}, headers=headers,
                             timeout=30)
    assert stopped.status_code == 200, stopped.text
    assert (stopped.json()["status"], stopped.json()["stop_reason"]) == ("stopped", "test over")

    rows = httpx.get(f"{url}/api/v1/audit", params={"action": "experiment", "target": name,
                                                    "from": started_at.isoformat()},
                     headers=api_server.headers("admin"), timeout=30).json()["records"]
    assert [(r["action"], r["result"], r["actor"]) for r in rows] == [
        ("experiment.stop", "ok", "test ml_engineer"), ("experiment.start", "ok", "test ml_engineer")]
    assert rows[0]["reason"] == "test over" and rows[0]["after"]["status"] == "stopped"


def test_an_invalid_definition_is_400_naming_the_fields(api_server: ApiServer) -> None:
    response = httpx.post(f"{api_server.url}/api/v1/experiments",
                          json={"name": "Bad Name", "variants": [{"name": "a", "model": "no-at-sign"}]},
                          headers=api_server.headers("ml_engineer"), timeout=30)

    assert response.status_code == 400 and response.json()["error"]["code"] == "CFG_003"
    message = response.json()["error"]["message"]
    assert "name:" in message and "variants" in message


def test_a_definition_naming_an_unregistered_version_is_refused(api_server: ApiServer) -> None:
    name = f"api-{uuid.uuid4().hex[:8]}"
    response = httpx.post(f"{api_server.url}/api/v1/experiments", json=_definition(name, candidate="9.9.9"),
                          headers=api_server.headers("ml_engineer"), timeout=30)

    assert (response.status_code, response.json()["error"]["code"]) == (404, "MODEL_001")
    status = httpx.get(f"{api_server.url}/api/v1/experiments", headers=api_server.headers("ml_engineer"), timeout=30)
    assert status.json()["active"] is None


def test_an_unknown_experiment_is_404(api_server: ApiServer) -> None:
    response = httpx.get(f"{api_server.url}/api/v1/experiments/never-ran", headers=api_server.headers("ml_engineer"),
                         timeout=30)

    assert (response.status_code, response.json()["error"]["detail"]) == (404, "experiment-not-found")
