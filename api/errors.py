"""The API's own errors, and the one table that turns any camcount error into an HTTP status and a JSON body.

Every error a client sees has the body ``{"error": {"code", "detail", "message", "remedy"}}`` (on the Open Inference
Protocol routes ``{"error": "CODE detail: message", "code", "detail", "message", "remedy"}``): ``code`` and
``detail`` are the project's taxonomy (docs/errors.md), ``message`` says what was wrong, ``remedy`` what to do
(``null`` when there is nothing to add). The status comes from :data:`STATUS_BY_DETAIL`, then
:data:`STATUS_BY_CODE`, then the code's family in :data:`STATUS_BY_FAMILY`, else 500. A stack trace never
reaches the client: an error that is no ``CamcountError`` is logged with its traceback and answered as
``API_002 internal-error``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from foundation.errors import CamcountError


class RequestRejected(CamcountError):
    """A request the API cannot act on as sent: the message names the field, header or value to fix."""

    code = "INF_001"
    detail = "invalid-request"


class MalformedJson(RequestRejected):
    """The body says it is JSON and is not."""

    detail = "malformed-json"


class UnsupportedMediaType(RequestRejected):
    """The body's Content-Type is not one the route accepts (the message lists them)."""

    detail = "unsupported-media-type"


class PayloadTooLarge(RequestRejected):
    """The request body is larger than ``api.max_body_bytes``; refused before it is read in full."""

    detail = "oversized-payload"


class UnsupportedOutputFormat(RequestRejected):
    """``outputFormat`` names a format the API does not produce (only ``json``)."""

    detail = "unsupported-output-format"


class UrlImagesDisabled(RequestRejected):
    """An image was named by URL while ``api.allow_url_images`` is off."""

    detail = "url-images-disabled"


class UrlImageUnavailable(RequestRejected):
    """An image URL could not be fetched within the API's size and time limits."""

    detail = "url-fetch-failed"


class RequestTimeout(CamcountError):
    """The model did not answer within ``api.request_timeout_s`` (queue wait included)."""

    code = "INF_004"
    detail = "request-timeout"


class Overloaded(CamcountError):
    """A model's queue already holds ``api.max_queued_images``: the request is refused at once (503 with
    Retry-After) instead of queueing for longer than a client would wait."""

    code = "RES_003"  # CPU (the model's compute is saturated)
    detail = "model-queue-full"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message, remedy=f"retry in {retry_after_s:.0f} s, with fewer concurrent requests, or "
                         "add API replicas")
        self.retry_after_s = retry_after_s


class NoSuchRoute(CamcountError):
    """No route has this path (HTTP 404), or the route does not take this method (405, detail method-not-allowed)."""

    code = "API_001"
    detail = "no-such-route"


class MethodNotAllowed(NoSuchRoute):
    detail = "method-not-allowed"


class InternalError(CamcountError):
    """A bug: the server logged the traceback under the request id given in the message."""

    code = "API_002"
    detail = "internal-error"


class UnguardedRoute(CamcountError):
    """``create_app`` found a route with neither an auth requirement nor the public marker (deny by default)."""

    code = "API_003"
    detail = "unguarded-route"


STATUS_BY_DETAIL: dict[tuple[str, str], int] = {
    ("INF_001", "malformed-json"): 400,
    ("INF_001", "oversized-payload"): 413,
    ("INF_001", "unsupported-media-type"): 415,
    ("INF_001", "url-fetch-failed"): 422,
    ("MODEL_004", "version-exists"): 409,
    ("API_001", "method-not-allowed"): 405,
    ("INF_001", "invalid-counts-query"): 400,
    ("INF_001", "invalid-time-zone"): 400,
    ("INF_001", "invalid-time-range"): 400,
    ("INF_001", "invalid-audit-query"): 400,
    ("EXP_005", "experiment-not-found"): 404,
}
"""Statuses of single (code, detail) pairs, where the code's own status does not fit."""

STATUS_BY_CODE: dict[str, int] = {
    "MODEL_001": 404,  # no such model, version or alias
    "MODEL_002": 503,  # the model cannot be loaded now
    "MODEL_003": 500,
    "MODEL_004": 500,
    "INF_001": 422,  # the request is well-formed HTTP but its content is invalid
    "INF_002": 422,  # the image cannot be decoded
    "INF_003": 500,
    "INF_004": 504,
    "AUTH_001": 401,
    "AUTH_002": 401,
    "AUTH_003": 403,
    "AUTH_004": 429,
    "API_001": 404,
    "API_002": 500,
    "CFG_001": 400,
    "CFG_003": 400,
    "CLI_001": 400,
    "EXP_003": 409,
    "EXP_004": 400,
    "EXP_005": 409,
    "KEY_001": 404,  # no API key has this id
    "KEY_002": 400,  # an API key cannot be created as asked
}
"""Status of every error of one code (unless :data:`STATUS_BY_DETAIL` says otherwise)."""

STATUS_BY_FAMILY: dict[str, int] = {"SYS": 503, "RES": 503, "AUTH": 401, "INF": 422}
"""Status of a code's family (the part before ``_``) when neither table above names it."""


def http_status(error: CamcountError) -> int:
    """The HTTP status the API answers ``error`` with (see the module docstring for the lookup order)."""
    by_detail = STATUS_BY_DETAIL.get((error.code, error.detail))
    if by_detail is not None:
        return by_detail
    if error.code in STATUS_BY_CODE:
        return STATUS_BY_CODE[error.code]
    return STATUS_BY_FAMILY.get(error.code.split("_")[0], 500)


def error_body(error: CamcountError) -> dict[str, Any]:
    """The JSON body of ``error``: code, detail, one-line message (no traceback) and remedy."""
    message = " ".join(str(error).split())
    return {"error": {"code": error.code, "detail": error.detail, "message": message, "remedy": error.remedy}}


def oip_error_body(error: CamcountError) -> dict[str, Any]:
    """The error body of the Open Inference Protocol routes: OIP (and Triton's clients) want ``error`` to be a
    string, so it holds ``"CODE detail: message"``; the other fields sit beside it."""
    fields = error_body(error)["error"]
    return {"error": f"{error.code} {error.detail}: {fields['message']}", **fields}


class ErrorDetail(BaseModel):
    code: str = Field(description="the error taxonomy code, e.g. INF_001 (docs/errors.md)")
    detail: str = Field(description="the finer reason, kebab-case, e.g. oversized-payload")
    message: str = Field(description="what was wrong, in one line")
    remedy: str | None = Field(description="what to do about it")


class ErrorResponse(BaseModel):
    """The body of every error answer."""

    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route's OpenAPI operation: these statuses answer an :class:`ErrorResponse`."""
    return {status: {"model": ErrorResponse, "description": _DESCRIPTIONS.get(status, "error")}
            for status in statuses}


_DESCRIPTIONS = {400: "malformed request", 401: "no or invalid API key (AUTH_001, AUTH_002)",
                 403: "the key's role may not call this (AUTH_003)", 404: "no such model, version or alias (MODEL_001)",
                 413: "body too large (INF_001 oversized-payload)", 415: "unsupported Content-Type",
                 422: "invalid request or image (INF_001, INF_002)", 429: "too many failed authentications (AUTH_004)",
                 500: "internal error",
                 503: "a model or service is unavailable (MODEL_002, SYS_*), or a model's queue is full (RES_003)",
                 504: "inference timed out (INF_004)"}
