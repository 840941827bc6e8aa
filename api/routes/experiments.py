"""``/api/v1/experiments``: A/B experiments (role ``ml_engineer``), the same actions as ``camcount ab``
(``management.experiments``).

``POST /api/v1/experiments`` starts an experiment from its definition as a JSON body: the same schema as the YAML
file ``camcount ab start`` reads (``experiments.config.Experiment``: name, variants with model and weight, ...);
an invalid one is 400 CFG_003 naming each field. Starting and stopping write one audit row each, with the calling
key as the actor.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Body, Depends, Path, status
from pydantic import BaseModel, ConfigDict, Field

from api.auth import Principal, Role, requires
from api.errors import error_responses
from api.principals import actor_of
from api.services import ApiServices, services_of
from experiments.config import Experiment, load_experiment
from foundation.clickhouse import ClickHouseUnavailable, is_unavailable
from management import experiments as manage

router = APIRouter(tags=["experiments"])

NAME = Path(description="the experiment's name", examples=["int8-trial"])
READ_ERRORS = error_responses(401, 403, 409, 422, 429, 503)
CHANGE_ERRORS = error_responses(400, 401, 403, 404, 409, 422, 429, 503)
DEFINITION = ("an experiment definition, the schema of the YAML file `camcount ab start` reads (docs/ab-testing.md), "
              'e.g. {"name": "int8-trial", "variants": [{"name": "fp32", "model": "yolov4-tiny@1.0.0"}, '
              '{"name": "int8", "model": "yolov4-tiny@1.1.0"}]}')
"""In the description rather than as an OpenAPI example: fuzzers replay examples, and this one would start an
experiment."""


class HistoryItem(BaseModel):
    at: str
    event: str
    experiment: str
    reason: str | None


class ExperimentsStatus(BaseModel):
    active: dict[str, Any] | None = Field(description="the running experiment (its stored state), or null")
    history: list[HistoryItem] = Field(description="every start and stop, oldest first")


class StopRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field("stopped over the API", min_length=1, max_length=500)


def _state(experiment: Experiment) -> dict[str, Any]:
    return experiment.model_dump(mode="json")


@router.get("/api/v1/experiments", response_model=ExperimentsStatus, responses=READ_ERRORS,
            summary="The running experiment and every start and stop")
async def experiments_status(_: Principal = Depends(requires(Role.ML_ENGINEER)),
                             services: ApiServices = Depends(services_of)) -> ExperimentsStatus:
    current = await asyncio.to_thread(manage.experiment_status, services.experiment_store)
    return ExperimentsStatus(
        active=_state(current.active) if current.active is not None else None,
        history=[HistoryItem(at=e.at.isoformat(), event=e.event, experiment=e.experiment, reason=e.reason)
                 for e in current.history])


@router.get("/api/v1/experiments/{name}", response_model=dict[str, Any], responses=READ_ERRORS,
            summary="One experiment's definition and state")
async def show_experiment(name: str = NAME, _: Principal = Depends(requires(Role.ML_ENGINEER)),
                          services: ApiServices = Depends(services_of)) -> dict[str, Any]:
    return _state(await asyncio.to_thread(manage.find_experiment, services.experiment_store, name))


@router.post("/api/v1/experiments", response_model=dict[str, Any], status_code=status.HTTP_201_CREATED,
             responses=CHANGE_ERRORS, summary="Start an experiment from its definition; audited")
async def start_experiment(definition: dict[str, Any] = Body(..., description=DEFINITION),
                           principal: Principal = Depends(requires(Role.ML_ENGINEER)),
                           services: ApiServices = Depends(services_of)) -> dict[str, Any]:
    experiment = load_experiment(definition)  # CFG_003 listing every problem
    started = await asyncio.to_thread(manage.start, services.experiment_store, services.registry, services.audit,
                                      actor_of(principal), experiment)
    return _state(started)


@router.post("/api/v1/experiments/{name}/stop", response_model=dict[str, Any], responses=CHANGE_ERRORS,
             summary="Stop the running experiment; audited")
async def stop_experiment(name: str = NAME, body: StopRequest | None = Body(None),
                          principal: Principal = Depends(requires(Role.ML_ENGINEER)),
                          services: ApiServices = Depends(services_of)) -> dict[str, Any]:
    reason = body.reason if body is not None else StopRequest().reason
    stopped = await asyncio.to_thread(manage.stop, services.experiment_store, services.audit, actor_of(principal),
                                      name, reason)
    return _state(stopped)


@router.get("/api/v1/experiments/{name}/report", response_model=dict[str, Any], responses=READ_ERRORS,
            summary="Per-variant statistics, tests and the decision, from ClickHouse")
async def experiment_report(name: str = NAME, _: Principal = Depends(requires(Role.ML_ENGINEER)),
                            services: ApiServices = Depends(services_of)) -> dict[str, Any]:
    def build() -> dict[str, Any]:
        client = services.clickhouse()
        try:
            return manage.report(client, services.experiment_store, name).to_dict()
        except Exception as exc:
            if is_unavailable(exc):
                raise ClickHouseUnavailable(f"ClickHouse cannot be reached: {' '.join(str(exc).split()[:12])}",
                                            remedy="start it or fix CLICKHOUSE_URL, then retry") from exc
            raise
        finally:
            client.disconnect()

    return await asyncio.to_thread(build)
