"""``create_app``: the FastAPI application of ``camcount api``.

What every request goes through, outermost first:

1. :class:`RequestGate` (pure ASGI middleware): gives the request an id (``X-Request-Id``), refuses a body larger
   than ``api.max_body_bytes`` before reading it (by its Content-Length, or as soon as a chunked body passes the
   limit), and afterwards counts the request in the metrics and the ClickHouse request log.
2. The route's dependencies: the auth guard (``api.auth.requires``) first, then parameters.
3. The exception handlers: every camcount error becomes its status and JSON error body (``api.errors``);
   FastAPI's validation errors become INF_001 invalid-request. Anything else (a bug) reaches the gate again, which
   logs it with its traceback and answers API_002 internal-error, never with the traceback.

Deny by default: :func:`create_app` raises UnguardedRoute if any route has neither an auth requirement nor the
public marker (``api.auth``).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import TooManyAuthFailures, is_public, required_roles
from api.errors import (
    InternalError,
    MethodNotAllowed,
    NoSuchRoute,
    Overloaded,
    PayloadTooLarge,
    RequestRejected,
    UnguardedRoute,
    error_body,
    http_status,
    oip_error_body,
)
from api.routes import audit, counts, experiments, health, inference, keys, models, oip, status
from api.services import ApiServices
from api.version import camcount_version
from foundation.errors import CamcountError
from foundation.settings import Settings
from sinks.request_log import RequestRow

log = logging.getLogger(__name__)

ROUTERS: list[APIRouter] = [
    health.router,
    inference.router,
    oip.router,
    status.router,
    models.router,
    experiments.router,
    counts.router,
    keys.router,
    audit.router,
]
"""Every router the app serves; add a resource's router here (one line)."""

OPENAPI_MODELS = (*inference.OPENAPI_MODELS,)
"""Pydantic models referenced by hand-written OpenAPI request bodies; their schemas join the document's components."""

OIP_PREFIX = "/v2"
"""Open Inference Protocol routes answer errors as ``api.errors.oip_error_body`` (``error`` is a string)."""
OPENAPI_URL = "/openapi.json"
DOCS_URL = "/docs"
PUBLIC_PATHS = frozenset({OPENAPI_URL, DOCS_URL, f"{DOCS_URL}/oauth2-redirect"})
"""FastAPI's own routes, which are not APIRoutes and so cannot carry the public marker."""


def create_app(settings: Settings, services: ApiServices | None = None) -> FastAPI:
    """The API application on ``services`` (default: built from ``settings``); see the module docstring."""
    services = services or ApiServices.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        check_routes_guarded(app)
        await services.start()
        try:
            yield
        finally:
            await services.stop()

    app = FastAPI(title="camcount API", version=camcount_version(), lifespan=lifespan, openapi_url=OPENAPI_URL,
                  docs_url=DOCS_URL, redoc_url=None,
                  description="Inference (REST and Open Inference Protocol v2), model status and metrics, counts "
                              "and model management. Authenticate with `Authorization: Bearer <key>` or "
                              "`X-API-Key: <key>`. See docs/api.md.")
    app.state.services = services
    for router in ROUTERS:
        app.include_router(router)
    _add_exception_handlers(app)
    app.add_middleware(RequestGate, services=services, templates=route_templates(app))
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    check_routes_guarded(app)
    return app


# --- deny by default -------------------------------------------------------------------------------------------
def _dependency_roles(dependant: Dependant) -> bool:
    return any(required_roles(d.call) is not None or _dependency_roles(d) for d in dependant.dependencies
               if d.call is not None)


def check_routes_guarded(app: FastAPI) -> None:
    """Raise UnguardedRoute naming every route that neither requires a role nor is marked public."""
    unguarded = []
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute):
            dependant = getattr(context, "dependant", None) or context.original_route.dependant
            if not (is_public(context.original_route.endpoint) or _dependency_roles(dependant)):
                unguarded.append(f"{sorted(context.methods or [])} {context.path}")
        elif context.path not in PUBLIC_PATHS:
            unguarded.append(f"{type(context.original_route).__name__} {context.path!r}")
    if unguarded:
        raise UnguardedRoute(f"routes without an auth requirement or the public marker: {unguarded}",
                             remedy="add Depends(requires(Role...)) or @public to each")


def route_templates(app: FastAPI) -> dict[int, str]:
    """id(route object put in the request scope) -> its full path template, include prefixes and all."""
    return {id(context.original_route): context.path for context in iter_route_contexts(app.routes)
            if context.path}


# --- errors ----------------------------------------------------------------------------------------------------
def error_response(request: Request, error: CamcountError) -> JSONResponse:
    """The JSON answer of ``error``; remembers its code for the request log."""
    request.state.error_code, request.state.error_detail = error.code, error.detail
    headers = {}
    if isinstance(error, (TooManyAuthFailures, Overloaded)):
        headers["Retry-After"] = str(int(error.retry_after_s + 0.999))
    if error.code.startswith("AUTH_"):
        request.app.state.services.metrics.auth_failures.labels(error.code).inc()
    if error.code in ("AUTH_001", "AUTH_002"):
        headers["WWW-Authenticate"] = "Bearer"
    body = oip_error_body(error) if request.url.path.startswith(OIP_PREFIX) else error_body(error)
    return JSONResponse(body, status_code=http_status(error), headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    problems = []
    for error in exc.errors()[:10]:
        where = ".".join(str(part) for part in error.get("loc", ())) or "request"
        problems.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(problems)


def _add_exception_handlers(app: FastAPI) -> None:
    async def camcount_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, CamcountError)
        status = http_status(exc)
        if status >= 500:
            log.warning("%s %s -> %d %s %s: %s", request.method, request.url.path, status, exc.code, exc.detail,
                        exc.one_line())
        return error_response(request, exc)

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(request, RequestRejected(_validation_message(exc),
                                                       remedy="see the request schema in /openapi.json"))

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if isinstance(exc.__cause__, CamcountError):  # FastAPI wraps errors raised while it reads a body
            return error_response(request, exc.__cause__)
        if exc.status_code == 405:
            error: CamcountError = MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}")
        elif exc.status_code == 404:
            error = NoSuchRoute(f"no route {request.url.path}", remedy="see /docs for the routes")
        else:
            response = JSONResponse({"error": {"code": f"HTTP_{exc.status_code}", "detail": "http-error",
                                               "message": str(exc.detail), "remedy": None}},
                                    status_code=exc.status_code)
            return response
        return error_response(request, error)

    app.add_exception_handler(CamcountError, camcount_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)


# --- OpenAPI ---------------------------------------------------------------------------------------------------
def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in OPENAPI_MODELS:
        model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(model_schema.pop("$defs", {}))
        components[model.__name__] = model_schema
    app.openapi_schema = schema
    return schema


# --- the gate every request passes -----------------------------------------------------------------------------
class RequestGate:
    """Pure ASGI middleware: request id, body-size limit, metrics and request log (see the module docstring).

    Invariant: at most ``api.max_body_bytes`` of a request body are ever passed on to the application.
    """

    def __init__(self, app: ASGIApp, services: ApiServices, templates: dict[int, str]) -> None:
        self.app = app
        self.services = services
        self.templates = templates
        self.limit = services.settings.api.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status_holder = {"status": 500}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        declared = _content_length(scope)
        try:
            if declared is not None and declared > self.limit:
                await self._refuse_too_large(scope, send_with_id, declared)
            else:
                await self.app(scope, self._limited(receive), send_with_id)
        except Exception as exc:  # a bug below: log it here, answer API_002, never the traceback
            log.error("request %s %s %s failed", request_id, scope.get("method"), scope.get("path"), exc_info=exc)
            if status_holder["status"] == 500 and not status_holder.get("started"):
                await self._answer(scope, send_with_id, InternalError(
                    f"internal error (request {request_id})", remedy="the server log has the details under this id"))
        finally:
            self._account(scope, status_holder["status"], started)

    def _limited(self, receive: Receive) -> Callable[[], Awaitable[Message]]:
        limit, seen = self.limit, 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise PayloadTooLarge(f"request body passed the {limit}-byte limit",
                                          remedy="send a smaller body (api.max_body_bytes)")
            return message

        return limited

    async def _refuse_too_large(self, scope: Scope, send: Send, declared: int) -> None:
        await self._answer(scope, send, PayloadTooLarge(
            f"request body of {declared} bytes exceeds the {self.limit}-byte limit",
            remedy="send a smaller body (api.max_body_bytes)"), headers={"Connection": "close"})

    async def _answer(self, scope: Scope, send: Send, error: CamcountError,
                      headers: dict[str, str] | None = None) -> None:
        """Answer ``error`` from here, outside the routes and their exception handlers."""
        scope["state"].update(error_code=error.code, error_detail=error.detail)
        body = oip_error_body(error) if scope.get("path", "").startswith(OIP_PREFIX) else error_body(error)
        response = JSONResponse(body, status_code=http_status(error), headers=headers)
        await response(scope, _no_body, send)

    def _account(self, scope: Scope, status: int, started: float) -> None:
        elapsed = time.perf_counter() - started
        route = scope.get("route")
        template = self.templates.get(id(route)) or getattr(route, "path", None) or "unmatched"
        method = scope.get("method", "")
        metrics = self.services.metrics
        metrics.requests.labels(template, method, str(status)).inc()
        metrics.latency.labels(template).observe(elapsed)
        request_log = self.services.request_log
        if request_log is None or template in _UNLOGGED:
            return
        state = scope.get("state", {})
        principal = state.get("principal")
        client = scope.get("client")
        now_ms = int(time.time() * 1000)
        request_log.record(RequestRow(
            request_time=RequestRow.time_of(now_ms), request_ts_ms=now_ms, request_id=state.get("request_id", ""),
            method=method, route=template, status=status, error_code=state.get("error_code", ""),
            error_detail=state.get("error_detail", ""), latency_ms=elapsed * 1000,
            model_name=state.get("model_name", ""), model_version=state.get("model_version", ""),
            images=min(state.get("images", 0), 65535), cache_hits=min(state.get("cache_hits", 0), 65535),
            key_id=principal.key_id if principal is not None else "",
            client=client[0] if client else ""))


_UNLOGGED = frozenset({"/metrics", "/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"})
"""Probe and scrape routes: counted in the metrics, not written to the request log."""


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _no_body() -> Message:
    return {"type": "http.disconnect"}
