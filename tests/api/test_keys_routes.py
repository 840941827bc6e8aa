"""API keys over real HTTP and from the CLI: a created key works for its role only, its secret is shown once, and a
revoked key is refused (401) by the running server within its key refresh interval."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.pipeline import CamcountProcesses
from tests.services import ApiServer

pytestmark = pytest.mark.integration


def _wait_for_401(api_server: ApiServer, secret: str, path: str = "/api/v1/cameras") -> float:
    """Seconds until ``secret`` gets 401 on ``path`` (fails after refresh interval + 3 s)."""
    started, limit = time.monotonic(), api_server.settings.api.key_refresh_s + 3.0
    while time.monotonic() - started < limit:
        response = httpx.get(f"{api_server.url}{path}", headers={"X-API-Key": secret}, timeout=30)
        if response.status_code == 401:
            assert response.json()["error"]["code"] == "AUTH_002"
            return time.monotonic() - started
        time.sleep(0.1)
    pytest.fail(f"the revoked key still works after {limit} s")


def _wait_for_200(api_server: ApiServer, secret: str, path: str) -> httpx.Response:
    deadline = time.monotonic() + api_server.settings.api.key_refresh_s + 3.0
    while True:
        response = httpx.get(f"{api_server.url}{path}", headers={"Authorization": f"Bearer {secret}"}, timeout=30)
        if response.status_code != 401 or time.monotonic() > deadline:
            return response
        time.sleep(0.1)


def test_an_admin_creates_lists_and_revokes_a_key_over_http(api_server: ApiServer) -> None:
    admin = api_server.headers("admin")

    created = httpx.post(f"{api_server.url}/api/v1/keys", json={"name": "dashboard", "role": "viewer"},
                         headers=admin, timeout=30)
    assert created.status_code == 201, created.text
    key = created.json()
    secret = key.pop("secret")
    assert (key["name"], key["role"], key["revoked"], key["createdBy"]) == (
        "dashboard", "viewer", False, "test admin (key-admin)")

    assert _wait_for_200(api_server, secret, "/api/v1/cameras").status_code == 200
    assert httpx.get(f"{api_server.url}/api/v1/keys", headers={"X-API-Key": secret},
                     timeout=30).status_code == 403
    listed = httpx.get(f"{api_server.url}/api/v1/keys", headers=admin, timeout=30)
    assert key in listed.json()["keys"] and secret not in listed.text

    revoked = httpx.delete(f"{api_server.url}/api/v1/keys/{key['keyId']}", headers=admin, timeout=30)
    assert revoked.status_code == 200 and revoked.json()["revoked"] is True
    assert _wait_for_401(api_server, secret) <= api_server.settings.api.key_refresh_s + 1.0

    rows = httpx.get(f"{api_server.url}/api/v1/audit", params={"action": "key", "target": key["keyId"]},
                     headers=admin, timeout=30).json()["records"]
    assert [r["action"] for r in rows] == ["key.revoke", "key.create"]
    assert secret not in json.dumps(rows)


def test_the_first_admin_key_is_made_with_the_cli_and_revoked_with_it(api_server: ApiServer,
                                                                        tmp_path: Path) -> None:
    """No bootstrap key involved: ``camcount api keys create`` writes to the server's key table directly."""
    cli = CamcountProcesses(api_server.settings, tmp_path)

    created = cli.run("api", "keys", "create", "--name", "first-admin", "--role", "admin", "--json",
                      "--actor", "alice")
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    assert key["created_by"].startswith("alice (")

    assert _wait_for_200(api_server, key["secret"], "/api/v1/audit").status_code == 200
    listed = cli.run("api", "keys", "list")
    assert key["key_id"] in listed.stdout and "valid" in listed.stdout and key["secret"] not in listed.stdout

    revoked = cli.run("api", "keys", "revoke", key["key_id"], "--actor", "alice")
    assert revoked.returncode == 0, revoked.stderr
    assert _wait_for_401(api_server, key["secret"], "/api/v1/audit") <= api_server.settings.api.key_refresh_s + 1.0

    rows = httpx.get(f"{api_server.url}/api/v1/audit", params={"target": key["key_id"]},
                     headers=api_server.headers("admin"), timeout=30).json()["records"]
    assert [(r["action"], r["actor"], r["source"]) for r in rows] == [
        ("key.revoke", "alice", "cli"), ("key.create", "alice", "cli")]


def test_revoking_an_unknown_key_is_404_key_001(api_server: ApiServer) -> None:
    response = httpx.delete(f"{api_server.url}/api/v1/keys/key_nobody", headers=api_server.headers("admin"),
                            timeout=30)

    assert (response.status_code, response.json()["error"]["code"]) == (404, "KEY_001")


def test_a_key_with_an_unknown_role_is_refused(api_server: ApiServer) -> None:
    response = httpx.post(f"{api_server.url}/api/v1/keys", json={"name": "x", "role": "root"},
                          headers=api_server.headers("admin"), timeout=30)

    assert response.status_code == 422 and response.json()["error"]["code"] == "INF_001"
