"""``POST /api/v1/models/{modelId}/inference`` and ``.../batch-inference``: detections for images sent by the
client (body formats: ``api.image_input``; detections and the bbox convention: ``api.inference``).

``modelId`` is a model reference: ``NAME`` (its production version), ``NAME@VERSION`` or ``NAME@ALIAS``; an unknown
one is 404 MODEL_001. Viewers may only use a model's production version (``NAME`` or ``NAME@production``); system
keys and above may name any version, and only they may send batches.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.auth import Principal, Role, RoleForbidden, acts_as, requires
from api.errors import error_responses
from api.image_input import (
    JSON,
    MULTIPART,
    RAW_IMAGE_TYPES,
    BatchInferenceRequest,
    InferenceRequest,
    read_batch,
    read_single,
)
from api.inference import MAX_DETECTIONS_LIMIT, ImageAnswer, infer_images
from api.services import ApiServices, services_of
from models.registry import PRODUCTION, ModelReference, RegisteredModel

router = APIRouter(tags=["inference"])

MODEL_ID = Path(description="model reference: NAME (its production version), NAME@VERSION or NAME@ALIAS",
                examples=["yolov4-tiny", "yolov4-tiny@1.0.0", "yolov4-tiny@production"])


class Detection(BaseModel):
    class_: str = Field(alias="class", description="class name from the model's manifest")
    classId: int = Field(description="class index")  # noqa: N815
    confidence: float
    bbox: list[float] = Field(min_length=4, max_length=4,
                              description="[x1, y1, x2, y2] in source-image pixels, origin top left")


class InferenceResults(BaseModel):
    detections: list[Detection]
    imageWidth: int  # noqa: N815
    imageHeight: int  # noqa: N815


class InferenceResponse(BaseModel):
    modelId: str = Field(description="the model reference as requested")  # noqa: N815
    model: str = Field(description="the model name")
    version: str = Field(description="the model version that answered")
    inferenceId: str = Field(description="a UUID naming this answer")  # noqa: N815
    results: InferenceResults
    processingTime: float = Field(description="milliseconds from the request's arrival to its answer")  # noqa: N815
    timestamp: str = Field(description="when the answer was made, ISO-8601 UTC")
    cached: bool = Field(description="whether the result came from the result cache")


class BatchImageResult(InferenceResults):
    imageIndex: int  # noqa: N815
    cached: bool


class BatchInferenceResponse(BaseModel):
    modelId: str  # noqa: N815
    model: str
    version: str
    inferenceId: str  # noqa: N815
    batchSize: int  # noqa: N815
    results: list[BatchImageResult]
    totalProcessingTime: float = Field(description="milliseconds for the whole batch")  # noqa: N815
    timestamp: str


async def option_query(
    confidenceThreshold: float | None = Query(None, ge=0.0, le=1.0),  # noqa: N803
    nmsThreshold: float | None = Query(None, ge=0.0, le=1.0),  # noqa: N803
    maxDetections: int | None = Query(None, ge=1, le=MAX_DETECTIONS_LIMIT),  # noqa: N803
    outputFormat: str | None = Query(None, description="only `json`"),  # noqa: N803
) -> None:
    """Documents (and range-checks) the options a client may put in the query string; ``api.image_input`` reads
    them, with the body's."""


def _binary(description: str) -> dict[str, Any]:
    return {"schema": {"type": "string", "format": "binary", "description": description}}


def _body(json_model: str, file_field: str, raw: bool) -> dict[str, Any]:
    multipart_file: dict[str, Any] = {"type": "string", "format": "binary"}
    content: dict[str, Any] = {
        JSON: {"schema": {"$ref": f"#/components/schemas/{json_model}"}},
        MULTIPART: {"schema": {"type": "object", "required": [file_field], "properties": {
            file_field: multipart_file if raw else {"type": "array", "items": multipart_file},
            "options": {"type": "string", "description": "the options as a JSON object"}}}},
    }
    if raw:
        content |= {kind: _binary("the image file") for kind in RAW_IMAGE_TYPES}
    return {"requestBody": {"required": True, "content": content}}


OPENAPI_MODELS: tuple[type[BaseModel], ...] = (InferenceRequest, BatchInferenceRequest)
"""Request-body models referenced from the hand-written request bodies below (create_app adds their schemas)."""

ERRORS = error_responses(400, 401, 403, 404, 413, 415, 422, 429, 503, 504)


def _check_may_use(principal: Principal, reference: str) -> None:
    if acts_as(principal.role, Role.SYSTEM):
        return
    parsed = ModelReference.parse(reference)
    if parsed.selector != PRODUCTION:
        raise RoleForbidden(f"role {principal.role.value!r} may only use a model's production version, not "
                            f"{reference!r}", remedy=f"use {parsed.name} or {parsed.name}@production")


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _results(answer: ImageAnswer) -> dict[str, Any]:
    return {"detections": answer.detections, "imageWidth": answer.width, "imageHeight": answer.height}


def _note(request: Request, model: RegisteredModel, answers: list[ImageAnswer]) -> None:
    """What the request log records about this request."""
    request.state.model_name = model.manifest.name
    request.state.model_version = model.manifest.version
    request.state.images = len(answers)
    request.state.cache_hits = sum(answer.cached for answer in answers)


@router.post("/api/v1/models/{modelId}/inference", response_model=InferenceResponse, responses=ERRORS,
             openapi_extra=_body("InferenceRequest", "image", raw=True),
             summary="Detect objects in one image")
async def inference(request: Request, modelId: str = MODEL_ID,  # noqa: N803
                    principal: Principal = Depends(requires(Role.VIEWER, Role.SYSTEM)),
                    _options: None = Depends(option_query),
                    services: ApiServices = Depends(services_of)) -> JSONResponse:
    started = time.perf_counter()
    _check_may_use(principal, modelId)
    model = services.models.resolve(modelId)
    image, options = await read_single(request, services.settings)
    (answer,) = await infer_images(services, model, [image], options)
    _note(request, model, [answer])
    return JSONResponse({
        "modelId": modelId, "model": model.manifest.name, "version": model.manifest.version,
        "inferenceId": str(uuid.uuid4()), "results": _results(answer),
        "processingTime": round((time.perf_counter() - started) * 1000, 3), "timestamp": _now_iso(),
        "cached": answer.cached,
    })


@router.post("/api/v1/models/{modelId}/batch-inference", response_model=BatchInferenceResponse, responses=ERRORS,
             openapi_extra=_body("BatchInferenceRequest", "images", raw=False),
             summary="Detect objects in several images, answered in order")
async def batch_inference(request: Request, modelId: str = MODEL_ID,  # noqa: N803
                          principal: Principal = Depends(requires(Role.SYSTEM)),
                          _options: None = Depends(option_query),
                          services: ApiServices = Depends(services_of)) -> JSONResponse:
    started = time.perf_counter()
    model = services.models.resolve(modelId)
    images, options = await read_batch(request, services.settings)
    answers = await infer_images(services, model, images, options)
    _note(request, model, answers)
    return JSONResponse({
        "modelId": modelId, "model": model.manifest.name, "version": model.manifest.version,
        "inferenceId": str(uuid.uuid4()), "batchSize": len(answers),
        "results": [{"imageIndex": index, **_results(answer), "cached": answer.cached}
                    for index, answer in enumerate(answers)],
        "totalProcessingTime": round((time.perf_counter() - started) * 1000, 3), "timestamp": _now_iso(),
    })
