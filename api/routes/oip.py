"""Open Inference Protocol v2 (KServe / Triton HTTP) for the same models, so a Triton or KServe client works unchanged.

Routes: ``GET /v2`` (server metadata), ``GET /v2/health/live|ready``, ``GET /v2/models/{name}[/versions/{v}]``
(model metadata), ``GET .../ready``, ``POST .../infer``. ``name`` is a model name; without ``versions/{v}`` its
production version serves; ``v`` is a version or an alias.

Inputs (one tensor, named ``images``):

- ``BYTES``, shape ``[N]`` or ``[N, 1]``: N encoded JPEG or PNG files. With the binary tensor data extension (what
  ``tritonclient.http`` sends by default) each element is a 4-byte little-endian length and the bytes; as JSON
  ``data``, each element is the file in base64.
- ``UINT8``, shape ``[H, W, 3]`` or ``[N, H, W, 3]``: decoded pictures, RGB, row major.

Outputs: ``detections`` FP32 ``[N, K, 6]``, rows ``x1, y1, x2, y2, score, class_id`` in source-image pixels, K the
largest detection count of the N images, shorter lists padded with rows of zeros and class -1; ``num_detections``
INT32 ``[N]``. They come back as JSON ``data``, or as binary data after the JSON header when the request asks
(``parameters.binary_data_output``, or ``binary_data`` on a requested output), with ``Inference-Header-Content-Length``.

Request parameters: ``confidence_threshold``, ``nms_threshold``, ``max_detections`` (as the REST options), and
Triton's ``timeout`` (microseconds, capped by ``api.request_timeout_s``); Triton's other reserved parameters are
accepted and ignored; anything else is refused (INF_001).
"""

from __future__ import annotations

import json
import struct
import uuid
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from api.auth import Principal, Role, public, requires
from api.errors import MalformedJson, RequestRejected, error_responses
from api.image_input import b64decode
from api.inference import ImageAnswer, InferenceOptions, infer_images
from api.services import ApiServices, services_of
from api.version import camcount_version
from foundation.settings import validation_problems
from models.registry import RegisteredModel

router = APIRouter(tags=["open inference protocol v2"])

HEADER_LENGTH = "Inference-Header-Content-Length"
INPUT_NAME = "images"
OUTPUTS = {"detections": "FP32", "num_detections": "INT32"}
PARAMETER_OPTIONS = {"confidence_threshold": "confidenceThreshold", "nms_threshold": "nmsThreshold",
                     "max_detections": "maxDetections"}
TRITON_IGNORED = frozenset({"priority", "sequence_id", "sequence_start", "sequence_end", "headers"})
_NUMPY = {"UINT8": np.uint8, "FP32": np.float32, "INT32": np.int32}
ERRORS = error_responses(400, 401, 403, 404, 413, 422, 429, 503, 504)
READERS = (Role.VIEWER, Role.SYSTEM)

_INFER_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"type": "object", "required": ["inputs"], "properties": {
        "id": {"type": "string"},
        "parameters": {"type": "object"},
        "inputs": {"type": "array", "items": {"type": "object", "required": ["name", "shape", "datatype"],
                                              "properties": {"name": {"type": "string"},
                                                             "shape": {"type": "array", "items": {"type": "integer"}},
                                                             "datatype": {"type": "string"},
                                                             "parameters": {"type": "object"},
                                                             "data": {"type": "array"}}}},
        "outputs": {"type": "array", "items": {"type": "object", "required": ["name"],
                                               "properties": {"name": {"type": "string"},
                                                              "parameters": {"type": "object"}}}}}}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary", "description":
                                            "the JSON request, then the binary tensor data; the header "
                                            "Inference-Header-Content-Length gives the JSON's length"}}}}}


def _reference(name: str, version: str | None) -> str:
    return f"{name}@{version}" if version else name


# --- health and metadata ---------------------------------------------------------------------------------------
@router.get("/v2/health/live", summary="OIP liveness")
@public
async def live() -> dict[str, bool]:
    return {"live": True}


@router.get("/v2/health/ready", summary="OIP readiness: the preloaded models serve (400 while not)",
            responses={400: {"description": "not ready"}})
@public
async def ready(services: ApiServices = Depends(services_of)) -> JSONResponse:
    is_ready = services.ready()
    return JSONResponse({"ready": is_ready}, status_code=200 if is_ready else 400)


@router.get("/v2", summary="OIP server metadata", responses=error_responses(401, 403, 429))
async def server_metadata(_: Principal = Depends(requires(*READERS))) -> dict[str, Any]:
    return {"name": "camcount", "version": camcount_version(), "extensions": ["binary_tensor_data", "parameters"]}


def _metadata(services: ApiServices, model: RegisteredModel) -> dict[str, Any]:
    name = model.manifest.name
    entry = next((e for e in services.registry.list() if e.name == name), None)
    return {
        "name": name,
        "versions": [m.version for m in entry.versions] if entry is not None else [model.manifest.version],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": INPUT_NAME, "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": "detections", "datatype": "FP32", "shape": [-1, -1, 6]},
                    {"name": "num_detections", "datatype": "INT32", "shape": [-1]}],
        "parameters": {"version_served": model.manifest.version,
                       "class_names": list(model.manifest.class_names)},
    }


@router.get("/v2/models/{name}", summary="OIP model metadata (production version)", responses=ERRORS)
async def model_metadata(name: str, _: Principal = Depends(requires(*READERS)),
                         services: ApiServices = Depends(services_of)) -> dict[str, Any]:
    return _metadata(services, services.models.resolve(_reference(name, None)))


@router.get("/v2/models/{name}/versions/{version}", summary="OIP model metadata (a version or alias)",
            responses=ERRORS)
async def model_version_metadata(name: str, version: str, _: Principal = Depends(requires(*READERS)),
                                 services: ApiServices = Depends(services_of)) -> dict[str, Any]:
    return _metadata(services, services.models.resolve(_reference(name, version)))


def _ready_answer(services: ApiServices, model: RegisteredModel) -> JSONResponse:
    served = services.models.find(model.manifest.name, model.manifest.version)
    is_ready = served is not None and served.state == "ready"
    return JSONResponse({"name": model.manifest.name, "version": model.manifest.version, "ready": is_ready},
                        status_code=200 if is_ready else 400)


@router.get("/v2/models/{name}/ready", summary="OIP model readiness (400: registered but not loaded here)",
            responses=ERRORS)
async def model_ready(name: str, _: Principal = Depends(requires(*READERS)),
                      services: ApiServices = Depends(services_of)) -> JSONResponse:
    return _ready_answer(services, services.models.resolve(_reference(name, None)))


@router.get("/v2/models/{name}/versions/{version}/ready", summary="OIP model version readiness", responses=ERRORS)
async def model_version_ready(name: str, version: str, _: Principal = Depends(requires(*READERS)),
                              services: ApiServices = Depends(services_of)) -> JSONResponse:
    return _ready_answer(services, services.models.resolve(_reference(name, version)))


# --- infer -----------------------------------------------------------------------------------------------------
def _split_body(request: Request, body: bytes) -> tuple[dict[str, Any], bytes]:
    header = request.headers.get(HEADER_LENGTH)
    if header is None:
        json_part, binary = body, b""
    else:
        try:
            length = int(header)
        except ValueError:
            raise RequestRejected(f"{HEADER_LENGTH} {header[:20]!r} is not a number",
                                  remedy="give the JSON header's length in bytes") from None
        if not 0 <= length <= len(body):
            raise RequestRejected(f"{HEADER_LENGTH} {length} is outside the body's {len(body)} bytes",
                                  remedy="give the JSON header's length in bytes")
        json_part, binary = body[:length], body[length:]
    try:
        document = json.loads(json_part)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedJson(f"the inference request is not valid JSON: {exc}",
                            remedy=f"send the JSON request first and, with binary data, set {HEADER_LENGTH}") \
            from exc
    if not isinstance(document, dict):
        raise RequestRejected("the inference request must be a JSON object", remedy="see the OIP v2 spec")
    return document, binary


def _options(parameters: Any, request_timeout_s: float) -> tuple[InferenceOptions, float, bool]:
    """(options, timeout s, binary output wanted) from the request's ``parameters``."""
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, dict):
        raise RequestRejected("parameters must be a JSON object", remedy="e.g. {\"confidence_threshold\": 0.3}")
    allowed = set(PARAMETER_OPTIONS) | {"timeout", "binary_data_output"} | TRITON_IGNORED
    unknown = sorted(set(parameters) - allowed)
    if unknown:
        raise RequestRejected(f"unknown request parameters {unknown}", remedy=f"use {sorted(allowed)}")
    try:
        options = InferenceOptions(**{PARAMETER_OPTIONS[k]: v for k, v in parameters.items()
                                      if k in PARAMETER_OPTIONS})
    except ValueError as exc:  # pydantic's ValidationError
        detail = validation_problems(exc) if hasattr(exc, "errors") else str(exc)
        raise RequestRejected(f"parameters: {detail}", remedy="see the OIP notes in docs/api.md") from exc
    timeout_s = request_timeout_s
    if "timeout" in parameters:
        micros = parameters["timeout"]
        if not isinstance(micros, int) or isinstance(micros, bool) or micros < 0:
            raise RequestRejected("parameters.timeout must be a whole number of microseconds",
                                  remedy="e.g. 5000000 for 5 s")
        if micros > 0:
            timeout_s = min(timeout_s, micros / 1e6)
    return options, timeout_s, bool(parameters.get("binary_data_output", False))


def _shape(value: Any) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in value):
        raise RequestRejected(f"shape {str(value)[:60]} is not a list of non-negative integers",
                              remedy="e.g. [1] for one encoded image")
    return value


def _tensor_bytes(tensor: dict[str, Any], binary: bytes, offset: int) -> tuple[bytes | None, int]:
    """The tensor's binary data (None when it is given as JSON ``data``) and the offset after it."""
    parameters = tensor.get("parameters") or {}
    size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
    if size is None:
        return None, offset
    if not isinstance(size, int) or size < 0 or offset + size > len(binary):
        raise RequestRejected(f"binary_data_size {size} of input {tensor.get('name')!r} runs past the body's "
                              f"{len(binary)} bytes of binary data", remedy="check the binary data's length")
    return binary[offset:offset + size], offset + size


def _bytes_elements(raw: bytes | None, data: Any, count: int) -> list[bytes]:
    if raw is None:
        if not isinstance(data, list) or not all(isinstance(item, str) for item in data):
            raise RequestRejected("BYTES data must be a list of base64 strings (or binary data)",
                                  remedy="send the files as binary tensor data")
        return [b64decode(item, f"{INPUT_NAME}[{i}]") for i, item in enumerate(data)]
    elements, position = [], 0
    while position < len(raw):
        if position + 4 > len(raw):
            raise RequestRejected("BYTES binary data ends inside an element's 4-byte length",
                                  remedy="prefix each element with its length (uint32, little-endian)")
        (length,) = struct.unpack_from("<I", raw, position)
        position += 4
        if position + length > len(raw):
            raise RequestRejected("a BYTES element runs past its tensor's binary data",
                                  remedy="check the element lengths")
        elements.append(raw[position:position + length])
        position += length
    if len(elements) != count:
        raise RequestRejected(f"the shape says {count} elements, the data holds {len(elements)}",
                              remedy="make shape and data agree")
    return elements


def _pixel_images(raw: bytes | None, data: Any, shape: list[int], max_pixels: int) -> list[np.ndarray]:
    if len(shape) == 3:
        shape = [1, *shape]
    if len(shape) != 4 or shape[3] != 3:
        raise RequestRejected(f"a UINT8 input has shape [H, W, 3] or [N, H, W, 3], not {shape}",
                              remedy="send RGB pictures, channels last")
    if shape[1] * shape[2] > max_pixels:
        raise RequestRejected(f"pictures of {shape[2]}x{shape[1]} exceed the {max_pixels}-pixel limit",
                              remedy="downscale them (api.max_image_pixels)")
    expected = int(np.prod(shape))
    try:
        if raw is not None:
            if len(raw) != expected:
                raise ValueError(f"{len(raw)} bytes for {expected} elements")
            pixels = np.frombuffer(raw, dtype=np.uint8)
        else:
            pixels = np.asarray(data, dtype=np.uint8).reshape(-1)
            if pixels.size != expected:
                raise ValueError(f"{pixels.size} values for {expected} elements")
    except (ValueError, TypeError, OverflowError) as exc:
        raise RequestRejected(f"UINT8 data does not fit shape {shape}: {exc}",
                              remedy="send N*H*W*3 values from 0 to 255") from exc
    rgb = pixels.reshape(shape)
    return [np.ascontiguousarray(image[:, :, ::-1]) for image in rgb]  # RGB -> the detector's BGR


def _images(document: dict[str, Any], binary: bytes, max_pixels: int, max_images: int
            ) -> list[bytes | np.ndarray]:
    inputs = document.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise RequestRejected(f"give exactly one input tensor, named {INPUT_NAME!r}",
                              remedy="see GET /v2/models/{name} for the model's inputs")
    tensor = inputs[0]
    if tensor.get("name") != INPUT_NAME:
        raise RequestRejected(f"unknown input {str(tensor.get('name'))[:40]!r}; the input is {INPUT_NAME!r}",
                              remedy="see GET /v2/models/{name}")
    shape = _shape(tensor.get("shape"))
    raw, _ = _tensor_bytes(tensor, binary, 0)
    datatype = tensor.get("datatype")
    if datatype == "BYTES":
        if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
            raise RequestRejected(f"a BYTES input has shape [N] or [N, 1], not {shape}",
                                  remedy="one encoded image per element")
        images: list[bytes | np.ndarray] = list(_bytes_elements(raw, tensor.get("data"), shape[0]))
    elif datatype == "UINT8":
        images = list(_pixel_images(raw, tensor.get("data"), shape, max_pixels))
    else:
        raise RequestRejected(f"input datatype {str(datatype)[:20]!r} is not accepted",
                              remedy="send BYTES (encoded JPEG/PNG) or UINT8 (RGB pictures)")
    if not images:
        raise RequestRejected("the input holds no image", remedy="send at least one")
    if len(images) > max_images:
        raise RequestRejected(f"{len(images)} images in one request; the limit is {max_images}",
                              remedy="split the request (api.max_images_per_request)")
    return images


def _requested_outputs(document: dict[str, Any], binary_default: bool) -> dict[str, bool]:
    """Output name -> whether it goes back as binary data."""
    outputs = document.get("outputs")
    if outputs is None:
        return {name: binary_default for name in OUTPUTS}
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise RequestRejected("outputs must be a list of objects", remedy='e.g. [{"name": "detections"}]')
    wanted = {}
    for output in outputs:
        name = output.get("name")
        if name not in OUTPUTS:
            raise RequestRejected(f"unknown output {str(name)[:40]!r}", remedy=f"outputs are {sorted(OUTPUTS)}")
        parameters = output.get("parameters") or {}
        wanted[name] = bool(parameters.get("binary_data", binary_default)) if isinstance(parameters, dict) \
            else binary_default
    return wanted


def _output_tensors(answers: list[ImageAnswer]) -> dict[str, np.ndarray]:
    most = max((len(a.detections) for a in answers), default=0)
    detections = np.zeros((len(answers), most, 6), dtype=np.float32)
    detections[:, :, 5] = -1
    for index, answer in enumerate(answers):
        for row, found in enumerate(answer.detections):
            detections[index, row] = [*found["bbox"], found["confidence"], found["classId"]]
    return {"detections": detections,
            "num_detections": np.array([len(a.detections) for a in answers], dtype=np.int32)}


def _infer_response(document: dict[str, Any], model: RegisteredModel, answers: list[ImageAnswer],
                    wanted: dict[str, bool]) -> Response:
    tensors = _output_tensors(answers)
    outputs, chunks = [], []
    for name, as_binary in wanted.items():
        array = tensors[name]
        output: dict[str, Any] = {"name": name, "datatype": OUTPUTS[name], "shape": list(array.shape)}
        if as_binary:
            data = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
            output["parameters"] = {"binary_data_size": len(data)}
            chunks.append(data)
        else:
            output["data"] = array.reshape(-1).tolist()
        outputs.append(output)
    header = {"model_name": model.manifest.name, "model_version": model.manifest.version,
              "id": str(document.get("id") or uuid.uuid4()), "outputs": outputs}
    if not chunks:
        return JSONResponse(header)
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    return Response(header_bytes + b"".join(chunks), media_type="application/octet-stream",
                    headers={HEADER_LENGTH: str(len(header_bytes))})


async def _infer(request: Request, services: ApiServices, reference: str) -> Response:
    model = services.models.resolve(reference)
    document, binary = _split_body(request, await request.body())
    api = services.settings.api
    options, timeout_s, binary_output = _options(document.get("parameters"), api.request_timeout_s)
    wanted = _requested_outputs(document, binary_output)
    images = _images(document, binary, api.max_image_pixels, api.max_images_per_request)
    answers = await infer_images(services, model, images, options, timeout_s)
    request.state.model_name, request.state.model_version = model.manifest.name, model.manifest.version
    request.state.images, request.state.cache_hits = len(answers), sum(a.cached for a in answers)
    return _infer_response(document, model, answers, wanted)


@router.post("/v2/models/{name}/infer", summary="OIP inference on the production version", responses=ERRORS,
             openapi_extra=_INFER_BODY)
async def infer(request: Request, name: str, _: Principal = Depends(requires(Role.SYSTEM)),
                services: ApiServices = Depends(services_of)) -> Response:
    return await _infer(request, services, _reference(name, None))


@router.post("/v2/models/{name}/versions/{version}/infer", summary="OIP inference on a version or alias",
             responses=ERRORS, openapi_extra=_INFER_BODY)
async def infer_version(request: Request, name: str, version: str, _: Principal = Depends(requires(Role.SYSTEM)),
                        services: ApiServices = Depends(services_of)) -> Response:
    return await _infer(request, services, _reference(name, version))
