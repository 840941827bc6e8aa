"""Who may call the serving routes, over real HTTP: 401 without or with a bad key, 403 for a role the route does not
admit, and through for the roles it does (docs/api.md's role matrix)."""

from __future__ import annotations

import httpx
import pytest

from tests.services import API_ROLES, ApiServer

pytestmark = pytest.mark.integration

# (method, path, roles admitted). Bodies are left empty: a request that passes auth is refused later (415, 422,
# ...) without running the model, which is enough to tell auth passed.
GUARDED = [
    ("POST", "/api/v1/models/yolov4-tiny/inference", {"viewer", "system", "ml_engineer", "admin"}),
    ("POST", "/api/v1/models/yolov4-tiny@production/inference", {"viewer", "system", "ml_engineer", "admin"}),
    ("POST", "/api/v1/models/yolov4-tiny@1.0.0/inference", {"system", "ml_engineer", "admin"}),
    ("POST", "/api/v1/models/yolov4-tiny@previous/inference", {"system", "ml_engineer", "admin"}),
    ("POST", "/api/v1/models/yolov4-tiny/batch-inference", {"system", "ml_engineer", "admin"}),
    ("GET", "/api/v1/models/yolov4-tiny/status", {"viewer", "system", "ml_engineer", "admin"}),
    ("GET", "/api/v1/models/yolov4-tiny/metrics?metrics=requests", {"viewer", "system", "ml_engineer", "admin"}),
    ("GET", "/v2", {"viewer", "system", "ml_engineer", "admin"}),
    ("GET", "/v2/models/yolov4-tiny", {"viewer", "system", "ml_engineer", "admin"}),
    ("GET", "/v2/models/yolov4-tiny/versions/1.0.0/ready", {"viewer", "system", "ml_engineer", "admin"}),
    ("POST", "/v2/models/yolov4-tiny/infer", {"system", "ml_engineer", "admin"}),
    ("POST", "/v2/models/yolov4-tiny/versions/1.0.0/infer", {"system", "ml_engineer", "admin"}),
]
PUBLIC = ["/v2/health/live", "/v2/health/ready", "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"]


def _code(response: httpx.Response) -> str | None:
    body = response.json()
    error = body.get("error")
    return error.get("code") if isinstance(error, dict) else body.get("code")


@pytest.fixture(scope="module")
def client(api_server: ApiServer) -> httpx.Client:
    with httpx.Client(base_url=api_server.url, timeout=60) as client:
        yield client


@pytest.mark.parametrize(("method", "path", "admitted"), GUARDED, ids=[f"{m} {p}" for m, p, _ in GUARDED])
def test_a_guarded_route_refuses_a_request_without_a_key_with_401(client: httpx.Client, method: str, path: str,
                                                                   admitted: set[str]) -> None:
    response = client.request(method, path)

    assert response.status_code == 401 and _code(response) == "AUTH_001"
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("key", ["an unknown key", "revoked"])
def test_an_unknown_or_revoked_key_gets_401_invalid_key(client: httpx.Client, api_server: ApiServer,
                                                        key: str) -> None:
    secret = api_server.keys.get(key, key)

    response = client.get("/api/v1/models/yolov4-tiny/status", headers={"Authorization": f"Bearer {secret}"})

    assert response.status_code == 401 and _code(response) == "AUTH_002"


@pytest.mark.parametrize(("method", "path", "admitted"), GUARDED, ids=[f"{m} {p}" for m, p, _ in GUARDED])
@pytest.mark.parametrize("role", API_ROLES)
def test_each_role_gets_through_exactly_the_routes_the_matrix_gives_it(client: httpx.Client, api_server: ApiServer,
                                                                        method: str, path: str, admitted: set[str],
                                                                        role: str) -> None:
    response = client.request(method, path, headers=api_server.headers(role))

    if role in admitted:
        assert response.status_code not in (401, 403), response.text
    else:
        assert response.status_code == 403 and _code(response) == "AUTH_003", response.text


def test_the_bootstrap_admin_key_from_the_environment_works_as_a_bearer_token(client: httpx.Client,
                                                                               api_server: ApiServer) -> None:
    response = client.get("/api/v1/models/yolov4-tiny/status",
                          headers={"Authorization": f"Bearer {api_server.admin_key}"})

    assert response.status_code == 200


@pytest.mark.parametrize("path", PUBLIC)
def test_the_public_routes_answer_without_a_key(client: httpx.Client, path: str) -> None:
    assert client.get(path).status_code == 200
