"""How an inference request carries its images and options, read into bytes and :class:`InferenceOptions`.

Three body types, chosen by ``Content-Type``:

- ``application/json``: ``{"image": "<base64>", "options": {...}}`` (or ``"imageUrl"`` instead of ``"image"``); for
  batch inference ``{"images": [{"image": ...} | {"imageUrl": ...}, ...], "options": {...}}``. Base64 may carry a
  ``data:image/...;base64,`` prefix.
- ``multipart/form-data``: file field ``image`` (batch: ``images``, repeated), optional text field ``options``
  holding the options as JSON.
- ``image/jpeg`` or ``image/png``: the image itself (single-image inference only); options in the query string.

Options may also be given in the query string with any body type, but not in both places. Nothing unknown is
ignored: an unknown field, form field, query parameter or option is refused (INF_001 invalid-request).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx
from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.datastructures import UploadFile

from api.errors import (
    MalformedJson,
    RequestRejected,
    UnsupportedMediaType,
    UrlImagesDisabled,
    UrlImageUnavailable,
)
from api.inference import InferenceOptions
from foundation.settings import Settings, validation_problems

JSON = "application/json"
MULTIPART = "multipart/form-data"
RAW_IMAGE_TYPES = ("image/jpeg", "image/png")
OPTION_NAMES = tuple(InferenceOptions.model_fields)


class ImageItem(BaseModel):
    """One image: base64 bytes in ``image``, or a URL in ``imageUrl`` (only when the server allows URL images)."""

    model_config = ConfigDict(extra="forbid")

    image: str | None = Field(None, description="base64 of a JPEG or PNG file (a data: URL prefix is allowed)")
    imageUrl: str | None = Field(None, description="http(s) URL of a JPEG or PNG; refused unless "  # noqa: N815
                                 "api.allow_url_images")

    @model_validator(mode="after")
    def _exactly_one(self) -> ImageItem:
        if (self.image is None) == (self.imageUrl is None):
            raise ValueError("give exactly one of image (base64) and imageUrl")
        return self


class InferenceRequest(ImageItem):
    """JSON body of single-image inference."""

    options: InferenceOptions = Field(default_factory=InferenceOptions)


class BatchInferenceRequest(BaseModel):
    """JSON body of batch inference."""

    model_config = ConfigDict(extra="forbid")

    images: list[ImageItem] = Field(min_length=1, description="the images, answered in this order (imageIndex)")
    options: InferenceOptions = Field(default_factory=InferenceOptions)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _validated(model: type[BaseModel], data: Any, where: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestRejected(f"{where}: {validation_problems(exc)}",
                              remedy="see the request schema in /openapi.json") from exc


def _json(text: bytes | str, where: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedJson(f"{where} is not valid JSON: {exc}", remedy="send well-formed JSON") from exc


def query_options(request: Request) -> dict[str, Any] | None:
    """Options given in the query string (raw strings; pydantic converts them), None when there are none.
    Raises RequestRejected for a query parameter that is not an option."""
    unknown = sorted(set(request.query_params) - set(OPTION_NAMES))
    if unknown:
        raise RequestRejected(f"unknown query parameters {unknown}", remedy=f"options are {list(OPTION_NAMES)}")
    return {name: request.query_params[name] for name in OPTION_NAMES if name in request.query_params} or None


def _options(from_body: Mapping[str, Any] | None, from_query: dict[str, Any] | None) -> InferenceOptions:
    if from_body is not None and from_query is not None:
        raise RequestRejected("options given both in the query string and in the body",
                              remedy="give them in one place")
    return _validated(InferenceOptions, from_body or from_query or {}, "options")


def b64decode(text: str, where: str) -> bytes:
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestRejected(f"{where} is not valid base64: {exc}", remedy="send the file's bytes base64-encoded") \
            from exc


async def fetch_url(url: str, settings: Settings, where: str) -> bytes:
    """The bytes at ``url``, when URL images are enabled: http(s) only, at most ``api.max_body_bytes``, within
    ``api.url_fetch_timeout_s``. No address filtering: enable it only for trusted clients (it lets them make
    this server fetch any address it can reach)."""
    if not settings.api.allow_url_images:
        raise UrlImagesDisabled(f"{where}: this server does not fetch image URLs",
                                remedy="send the image itself (base64, multipart or a raw image/jpeg body)")
    if urlsplit(url).scheme not in ("http", "https"):
        raise UrlImageUnavailable(f"{where}: only http and https URLs are fetched", remedy="give an http(s) URL")
    limit = settings.api.max_body_bytes
    try:
        async with httpx.AsyncClient(timeout=settings.api.url_fetch_timeout_s, follow_redirects=True) as client:
            async with client.stream("GET", url) as response:
                if response.status_code != 200:
                    raise UrlImageUnavailable(f"{where}: {url} answered HTTP {response.status_code}",
                                              remedy="check the URL")
                data = bytearray()
                async for chunk in response.aiter_bytes():
                    data += chunk
                    if len(data) > limit:
                        raise UrlImageUnavailable(f"{where}: {url} is larger than {limit} bytes",
                                                  remedy="send a smaller image")
                return bytes(data)
    except httpx.HTTPError as exc:
        raise UrlImageUnavailable(f"{where}: cannot fetch {url}: {exc}", remedy="check the URL") from exc


async def _item_bytes(item: ImageItem, settings: Settings, where: str) -> bytes:
    if item.image is not None:
        return b64decode(item.image, where)
    assert item.imageUrl is not None
    return await fetch_url(item.imageUrl, settings, where)


async def _form(request: Request, file_field: str, max_files: int) -> tuple[list[bytes], dict[str, Any] | None]:
    allowed = {file_field, "options"}
    try:
        form = await request.form(max_files=max_files, max_fields=len(allowed) + 1)
    except Exception as exc:  # starlette's MultiPartException / parser errors
        if isinstance(exc, RequestRejected):  # e.g. the body-size limit, raised while the form was read
            raise
        raise RequestRejected(f"unreadable multipart body: {exc}",
                              remedy=f"send multipart/form-data with a file field {file_field!r}") from exc
    try:
        unknown = sorted(set(form.keys()) - allowed)
        if unknown:
            raise RequestRejected(f"unknown form fields {unknown}", remedy=f"use {sorted(allowed)}")
        files = []
        for value in form.getlist(file_field):
            if not isinstance(value, UploadFile):
                raise RequestRejected(f"form field {file_field!r} must be a file upload",
                                      remedy="attach the image as a file")
            files.append(await value.read())
        if not files:
            raise RequestRejected(f"no file in form field {file_field!r}", remedy="attach the image as a file")
        options = form.get("options")
        if isinstance(options, UploadFile):
            options = (await options.read()).decode(errors="replace")
        parsed = _json(options, "form field 'options'") if options else None
        if parsed is not None and not isinstance(parsed, dict):
            raise RequestRejected("form field 'options' must be a JSON object", remedy='e.g. {"maxDetections": 10}')
        return files, parsed
    finally:
        await form.close()


async def read_single(request: Request, settings: Settings) -> tuple[bytes, InferenceOptions]:
    """The image and options of a single-image inference request (see the module docstring)."""
    kind = media_type(request)
    from_query = query_options(request)
    if kind in RAW_IMAGE_TYPES:
        return await request.body(), _options(None, from_query)
    if kind == JSON:
        body = _validated(InferenceRequest, _json(await request.body(), "the body"), "body")
        options = _options(body.options.model_dump(exclude_unset=True) if "options" in body.model_fields_set
                           else None, from_query)
        return await _item_bytes(body, settings, "image"), options
    if kind == MULTIPART:
        files, options = await _form(request, "image", max_files=1)
        if len(files) != 1:
            raise RequestRejected("single-image inference takes one file", remedy="use batch-inference for more")
        return files[0], _options(options, from_query)
    raise UnsupportedMediaType(f"Content-Type {kind or '(none)'!r} is not accepted here",
                               remedy=f"send {JSON}, {MULTIPART}, image/jpeg or image/png")


async def read_batch(request: Request, settings: Settings) -> tuple[list[bytes], InferenceOptions]:
    """The images and options of a batch inference request (at most ``api.max_images_per_request`` images)."""
    kind = media_type(request)
    from_query = query_options(request)
    limit = settings.api.max_images_per_request
    if kind == JSON:
        body = _validated(BatchInferenceRequest, _json(await request.body(), "the body"), "body")
        if len(body.images) > limit:
            raise RequestRejected(f"{len(body.images)} images in one request; the limit is {limit}",
                                  remedy="split the batch (api.max_images_per_request)")
        options = _options(body.options.model_dump(exclude_unset=True) if "options" in body.model_fields_set
                           else None, from_query)
        images = [await _item_bytes(item, settings, f"images[{i}]") for i, item in enumerate(body.images)]
        return images, options
    if kind == MULTIPART:
        files, options = await _form(request, "images", max_files=limit)
        return files, _options(options, from_query)
    raise UnsupportedMediaType(f"Content-Type {kind or '(none)'!r} is not accepted for batch inference",
                               remedy=f"send {JSON} or {MULTIPART} with repeated 'images' files")
