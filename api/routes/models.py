"""``/api/v1/models``: list, show and verify registered models; promote and roll back (role ``ml_engineer``).

The same actions as ``camcount models`` (``management.models``): a promote or rollback writes one audit row with
the calling key as the actor and the model's aliases before and after. ``modelId`` is a model reference (``NAME``,
``NAME@VERSION``, ``NAME@ALIAS``); ``name`` is a model name. An unknown one is 404 MODEL_001.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Body, Depends, Path
from pydantic import BaseModel, ConfigDict, Field

from api.auth import Principal, Role, requires
from api.errors import error_responses
from api.principals import actor_of
from api.services import ApiServices, services_of
from management import models as manage
from models.errors import ChecksumMismatch
from models.manifest import ModelManifest
from models.registry import PRODUCTION, ModelEntry

router = APIRouter(tags=["model management"])

MODEL_ID = Path(description="model reference: NAME (its production version), NAME@VERSION or NAME@ALIAS",
                examples=["yolov4-tiny", "yolov4-tiny@1.0.0"])
MODEL_NAME = Path(description="model name, e.g. yolov4-tiny")
"""No ``examples``: an OpenAPI fuzzer replays documented examples, and these routes really move aliases."""
READ_ERRORS = error_responses(401, 403, 404, 422, 429, 503)
CHANGE_ERRORS = error_responses(401, 403, 404, 409, 422, 429, 503)


class ModelVersion(BaseModel):
    version: str
    format: str
    precision: str
    inputWidth: int  # noqa: N815 - the API's JSON names
    inputHeight: int  # noqa: N815
    classes: int = Field(description="number of classes")
    sha256: str
    createdAt: str  # noqa: N815
    aliases: list[str] = Field(description="aliases pointing at this version")


class ModelSummary(BaseModel):
    name: str
    aliases: dict[str, str] = Field(description="alias -> version")
    versions: list[ModelVersion] = Field(description="oldest first")


class ModelList(BaseModel):
    models: list[ModelSummary]


class ModelDetail(BaseModel):
    modelId: str = Field(description="the reference as requested")  # noqa: N815
    name: str
    version: str
    aliases: list[str]
    manifest: dict[str, Any]


class Verification(BaseModel):
    modelId: str  # noqa: N815
    name: str
    version: str
    sha256: str = Field(description="the manifest's sha256")
    ok: bool = Field(description="whether the stored weights have the manifest's sha256")
    problem: str | None = Field(description="what differs, when not ok")


class PromoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str = Field(description="the version the alias will point at", examples=["1.2.0"])
    alias: str = Field(PRODUCTION, description="the alias to move; moving production keeps the old one as previous")
    reason: str = Field("", max_length=500, description="why, for the audit trail")


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field("", max_length=500, description="why, for the audit trail")


class AliasChangeResponse(BaseModel):
    name: str
    alias: str
    version: str = Field(description="the version the alias points at now")
    before: dict[str, str] = Field(description="the model's aliases before")
    after: dict[str, str] = Field(description="the model's aliases after")


def _version(manifest: ModelManifest, aliases: dict[str, str]) -> ModelVersion:
    return ModelVersion(version=manifest.version, format=manifest.format, precision=manifest.precision,
                        inputWidth=manifest.input_width, inputHeight=manifest.input_height,
                        classes=len(manifest.class_names), sha256=manifest.sha256,
                        createdAt=manifest.created_at.isoformat(),
                        aliases=sorted(a for a, v in aliases.items() if v == manifest.version))


def _summary(entry: ModelEntry) -> ModelSummary:
    return ModelSummary(name=entry.name, aliases=entry.aliases,
                        versions=[_version(m, entry.aliases) for m in entry.versions])


@router.get("/api/v1/models", response_model=ModelList, responses=READ_ERRORS, summary="Every registered model")
async def list_models(_: Principal = Depends(requires(Role.ML_ENGINEER)),
                      services: ApiServices = Depends(services_of)) -> ModelList:
    entries = await asyncio.to_thread(manage.list_models, services.registry)
    return ModelList(models=[_summary(entry) for entry in entries])


@router.get("/api/v1/models/{modelId}", response_model=ModelDetail, responses=READ_ERRORS,
            summary="The manifest of the version a reference resolves to")
async def show_model(modelId: str = MODEL_ID,  # noqa: N803
                     _: Principal = Depends(requires(Role.ML_ENGINEER)),
                     services: ApiServices = Depends(services_of)) -> ModelDetail:
    model = await asyncio.to_thread(manage.show_model, services.registry, modelId)
    aliases = await asyncio.to_thread(services.registry.aliases, model.manifest.name)
    return ModelDetail(modelId=modelId, name=model.manifest.name, version=model.manifest.version,
                       aliases=sorted(a for a, v in aliases.items() if v == model.manifest.version),
                       manifest=model.manifest.model_dump(mode="json"))


@router.post("/api/v1/models/{modelId}/verify", response_model=Verification, responses=READ_ERRORS,
             summary="Check the stored weights against the manifest's sha256 (changes nothing)")
async def verify_model(modelId: str = MODEL_ID,  # noqa: N803
                       _: Principal = Depends(requires(Role.ML_ENGINEER)),
                       services: ApiServices = Depends(services_of)) -> Verification:
    model = await asyncio.to_thread(manage.show_model, services.registry, modelId)
    try:
        await asyncio.to_thread(manage.verify_model, services.registry, modelId)
        problem = None
    except ChecksumMismatch as exc:
        problem = exc.message
    return Verification(modelId=modelId, name=model.manifest.name, version=model.manifest.version,
                        sha256=model.manifest.sha256, ok=problem is None, problem=problem)


@router.post("/api/v1/models/{name}/promote", response_model=AliasChangeResponse, responses=CHANGE_ERRORS,
             summary="Point an alias (default production) at a version; audited")
async def promote(body: PromoteRequest, name: str = MODEL_NAME,
                  principal: Principal = Depends(requires(Role.ML_ENGINEER)),
                  services: ApiServices = Depends(services_of)) -> AliasChangeResponse:
    change = await asyncio.to_thread(manage.promote, services.registry, services.audit, actor_of(principal), name,
                                     body.version, body.alias, body.reason)
    services.models.forget_resolutions(name)
    return AliasChangeResponse(name=change.model, alias=change.alias, version=change.version, before=change.before,
                               after=change.after)


@router.post("/api/v1/models/{name}/rollback", response_model=AliasChangeResponse, responses=CHANGE_ERRORS,
             summary="Swap production and previous; audited")
async def rollback(name: str = MODEL_NAME, body: RollbackRequest | None = Body(None),
                   principal: Principal = Depends(requires(Role.ML_ENGINEER)),
                   services: ApiServices = Depends(services_of)) -> AliasChangeResponse:
    reason = body.reason if body is not None else ""
    change = await asyncio.to_thread(manage.rollback, services.registry, services.audit, actor_of(principal), name,
                                     reason)
    services.models.forget_resolutions(name)
    return AliasChangeResponse(name=change.model, alias=change.alias, version=change.version, before=change.before,
                               after=change.after)
