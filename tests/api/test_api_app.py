"""The application around the routes, in process (no stack, a fake model): deny by default, the error bodies and
statuses, the body-size gate, timeouts, and the auth-failure budget."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter
from fastapi.routing import APIRoute, iter_route_contexts

from api import app as api_app
from api.app import PUBLIC_PATHS, create_app
from api.auth import is_public
from api.errors import http_status
from foundation.errors import CamcountError
from foundation.settings import Settings
from tests.api.fakes import ADMIN_KEY, FakeDetector, fake_services

ADMIN = {"X-API-Key": ADMIN_KEY}
JPEG_HEADER = {"Content-Type": "image/jpeg"}


def settings_for(tmp_path: Path, **api: object) -> Settings:
    return Settings(home=tmp_path, api={"max_body_bytes": 64 * 1024, **api})


def call(app, scenario: Callable[[httpx.AsyncClient], Awaitable[object]], client: str = "10.0.0.1"):
    async def run() -> object:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=(client, 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
                return await scenario(http)

    return asyncio.run(run())


def tiny_jpeg() -> bytes:
    import cv2
    import numpy as np

    return cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes()


def test_every_route_requires_a_role_or_is_marked_public(tmp_path: Path) -> None:
    app = create_app(settings_for(tmp_path), fake_services(settings_for(tmp_path)))
    public = set()
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute) and is_public(route.endpoint):
            public.add(context.path)
        elif not isinstance(route, APIRoute):
            assert context.path in PUBLIC_PATHS

    assert public == {"/healthz", "/readyz", "/metrics", "/v2/health/live", "/v2/health/ready"}


def test_an_app_with_an_unguarded_route_refuses_to_be_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    forgotten = APIRouter()

    @forgotten.get("/api/v1/forgotten")
    async def no_guard() -> dict:
        return {}

    monkeypatch.setattr(api_app, "ROUTERS", [*api_app.ROUTERS, forgotten])

    with pytest.raises(CamcountError) as refused:
        create_app(settings_for(tmp_path), fake_services(settings_for(tmp_path)))

    assert refused.value.code == "API_003" and "/api/v1/forgotten" in str(refused.value)


@pytest.mark.parametrize(("code", "detail", "status"), [
    ("MODEL_001", "not-found", 404), ("INF_001", "invalid-request", 422), ("INF_001", "malformed-json", 400),
    ("INF_001", "oversized-payload", 413), ("INF_001", "unsupported-media-type", 415),
    ("INF_002", "corrupt-image", 422), ("INF_004", "request-timeout", 504), ("SYS_002", "clickhouse-unavailable", 503),
    ("SYS_003", "redis-unavailable", 503), ("MODEL_002", "load-failed", 503), ("AUTH_001", "missing-credentials", 401),
    ("AUTH_002", "invalid-key", 401), ("AUTH_003", "role-forbidden", 403), ("AUTH_004", "too-many-failures", 429),
    ("EXP_005", "experiment-state", 409), ("CLI_001", "usage", 400), ("WORKER_001", "anything", 500),
])
def test_each_error_code_has_its_http_status(code: str, detail: str, status: int) -> None:
    error_class = type("E", (CamcountError,), {"code": code, "detail": detail})

    assert http_status(error_class("x")) == status


def test_a_slow_model_answers_504_inf_004(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, request_timeout_s=0.2)
    app = create_app(settings, fake_services(settings, FakeDetector(run_s=1.0)))

    async def scenario(http: httpx.AsyncClient) -> httpx.Response:
        return await http.post("/api/v1/models/fake/inference", content=tiny_jpeg(), headers={**ADMIN, **JPEG_HEADER})

    response = call(app, scenario)

    assert response.status_code == 504
    assert response.json()["error"]["code"] == "INF_004"


def test_a_bug_answers_500_api_002_with_a_request_id_and_no_traceback(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    app = create_app(settings, fake_services(settings, FakeDetector(error=ZeroDivisionError("secret internals"))))

    async def scenario(http: httpx.AsyncClient) -> httpx.Response:
        return await http.post("/api/v1/models/fake/inference", content=tiny_jpeg(), headers={**ADMIN, **JPEG_HEADER})

    response = call(app, scenario)

    assert response.status_code == 500
    error = response.json()["error"]
    assert (error["code"], error["detail"]) == ("API_002", "internal-error")
    assert response.headers["x-request-id"] in error["message"]
    assert "secret internals" not in response.text and "Traceback" not in response.text


def test_a_body_declared_too_large_is_refused_before_it_is_read_or_authenticated(tmp_path: Path) -> None:
    app = create_app(settings_for(tmp_path), fake_services(settings_for(tmp_path)))

    async def scenario(http: httpx.AsyncClient) -> httpx.Response:
        return await http.post("/api/v1/models/fake/inference", content=b"x" * (64 * 1024 + 1), headers=JPEG_HEADER)

    response = call(app, scenario)

    assert response.status_code == 413 and response.json()["error"]["detail"] == "oversized-payload"


def test_fastapis_own_validation_errors_become_inf_001(tmp_path: Path) -> None:
    app = create_app(settings_for(tmp_path), fake_services(settings_for(tmp_path)))

    async def scenario(http: httpx.AsyncClient) -> httpx.Response:
        return await http.get("/api/v1/models/fake/metrics", params={"step": "fortnight"}, headers=ADMIN)

    response = call(app, scenario)

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "INF_001" and "step" in response.json()["error"]["message"]


def test_too_many_failed_authentications_from_one_address_get_429_even_with_a_good_key(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    app = create_app(settings, fake_services(settings, failure_limit=3))
    status_url = "/api/v1/models/fake/status"

    async def scenario(http: httpx.AsyncClient) -> list[httpx.Response]:
        bad = [await http.get(status_url, headers={"X-API-Key": "guess"}) for _ in range(3)]
        return [*bad, await http.get(status_url, headers=ADMIN)]

    responses = call(app, scenario)

    assert [r.status_code for r in responses] == [401, 401, 401, 429]
    assert responses[-1].json()["error"]["code"] == "AUTH_004" and int(responses[-1].headers["Retry-After"]) >= 1


def test_the_failure_budget_is_per_client_address(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    services = fake_services(settings, failure_limit=1)
    for _ in range(2):
        services.key_ring.budget.failed("10.0.0.66")
    app = create_app(settings, services)

    async def scenario(http: httpx.AsyncClient) -> httpx.Response:
        return await http.get("/api/v1/models/fake/status", headers=ADMIN)

    assert call(app, scenario, client="10.0.0.66").status_code == 429
    assert call(app, scenario, client="10.0.0.67").status_code == 200


@pytest.fixture
def image_server():
    """A local HTTP server: /frame.jpg is a small JPEG, /big.jpg is larger than the test's 64 KiB body limit."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    files = {"/frame.jpg": tiny_jpeg(), "/big.jpg": b"\xff\xd8" + b"\x00" * (80 * 1024)}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize(("path", "status", "detail"), [("/frame.jpg", 200, None), ("/missing.jpg", 422,
                                                         "url-fetch-failed"), ("/big.jpg", 422, "url-fetch-failed")])
def test_with_url_images_enabled_the_server_fetches_within_its_limits(tmp_path: Path, image_server: str, path: str,
                                                                      status: int, detail: str | None) -> None:
    settings = settings_for(tmp_path, allow_url_images=True)
    app = create_app(settings, fake_services(settings))

    async def scenario(http: httpx.AsyncClient) -> httpx.Response:
        return await http.post("/api/v1/models/fake/inference", json={"imageUrl": f"{image_server}{path}"},
                               headers=ADMIN)

    response = call(app, scenario)

    assert response.status_code == status, response.text
    if detail is not None:
        assert response.json()["error"]["detail"] == detail
    else:
        assert response.json()["results"]["detections"][0]["bbox"] == [1.0, 2.0, 3.0, 4.0]
