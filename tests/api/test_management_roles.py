"""Deny by default, over real HTTP: every state-changing management route answers 401 without a key or with a
revoked one, 403 to a role it does not admit, and lets the roles it admits through to the action.

Admitted calls are built to fail harmlessly after authorisation (an unknown model, experiment or key, an invalid
body), so the table changes nothing; those failures are audited like any other attempt.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.services import ApiServer

pytestmark = pytest.mark.integration

# (method, path, JSON body, the roles admitted, the status an admitted call gets)
ROUTES: list[tuple[str, str, Any, set[str], int]] = [
    ("POST", "/api/v1/models/no-such-model/promote", {"version": "1.0.0"}, {"ml_engineer", "admin"}, 404),
    ("POST", "/api/v1/models/no-such-model/rollback", None, {"ml_engineer", "admin"}, 404),
    ("POST", "/api/v1/models/no-such-model/verify", None, {"ml_engineer", "admin"}, 404),
    ("POST", "/api/v1/experiments", {"name": "no-variants"}, {"ml_engineer", "admin"}, 400),
    ("POST", "/api/v1/experiments/never-started/stop", None, {"ml_engineer", "admin"}, 409),
    ("POST", "/api/v1/keys", {"name": "", "role": "viewer"}, {"admin"}, 422),
    ("DELETE", "/api/v1/keys/key_doesnotexist", None, {"admin"}, 404),
]
ROLES = ["viewer", "system", "ml_engineer", "admin"]


def _call(api_server: ApiServer, method: str, path: str, body: Any, headers: dict[str, str]) -> httpx.Response:
    return httpx.request(method, f"{api_server.url}{path}", json=body, headers=headers, timeout=30)


@pytest.mark.parametrize("method, path, body, admitted, admitted_status", ROUTES,
                         ids=[f"{m} {p}" for m, p, *_ in ROUTES])
def test_each_role_gets_401_403_or_through(api_server: ApiServer, method: str, path: str, body: Any,
                                           admitted: set[str], admitted_status: int) -> None:
    anonymous = _call(api_server, method, path, body, {})
    revoked = _call(api_server, method, path, body, api_server.headers("revoked"))
    assert (anonymous.status_code, anonymous.json()["error"]["code"]) == (401, "AUTH_001")
    assert (revoked.status_code, revoked.json()["error"]["code"]) == (401, "AUTH_002")
    for role in ROLES:
        response = _call(api_server, method, path, body, api_server.headers(role))
        if role in admitted:
            assert response.status_code == admitted_status, (role, response.text)
        else:
            assert (response.status_code, response.json()["error"]["code"]) == (403, "AUTH_003"), role
        assert "Traceback" not in response.text


@pytest.mark.parametrize("path, admitted", [
    ("/api/v1/models", {"ml_engineer", "admin"}),
    ("/api/v1/experiments", {"ml_engineer", "admin"}),
    ("/api/v1/keys", {"admin"}),
    ("/api/v1/audit", {"admin"}),
    ("/api/v1/cameras", {"viewer", "ml_engineer", "admin"}),
    ("/api/v1/counts/lines", {"viewer", "ml_engineer", "admin"}),
    ("/api/v1/counts/zones", {"viewer", "ml_engineer", "admin"}),
    ("/api/v1/live", {"viewer", "ml_engineer", "admin"}),
])
def test_each_read_route_admits_its_roles_only(api_server: ApiServer, path: str, admitted: set[str]) -> None:
    assert httpx.get(f"{api_server.url}{path}", timeout=30).status_code == 401
    for role in ROLES:
        response = httpx.get(f"{api_server.url}{path}", headers=api_server.headers(role), timeout=30)
        assert response.status_code == (200 if role in admitted else 403), (role, response.text)
