"""Operator endpoints of the API process, open to unauthenticated callers like every camcount process's: liveness
``/healthz``, readiness ``/readyz`` (the preloaded models serve) and Prometheus ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.auth import public
from api.services import ApiServices, services_of

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_class=PlainTextResponse, summary="Liveness: the process answers")
@public
async def healthz() -> str:
    return "ok\n"


@router.get("/readyz", response_class=PlainTextResponse, summary="Readiness: the preloaded models serve",
            responses={503: {"description": "not ready yet"}})
@public
async def readyz(services: ApiServices = Depends(services_of)) -> PlainTextResponse:
    ready = services.ready()
    return PlainTextResponse("ready\n" if ready else "not ready\n", status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics of this process", response_class=PlainTextResponse)
@public
async def metrics(services: ApiServices = Depends(services_of)) -> Response:
    services.metrics.models_loaded.set(len(services.models.loaded()))
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)
