"""Every kind of bad input gets its 4xx with the project's error code and a message that says what to fix, and the
server goes on answering (real HTTP against a running ``camcount api``)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.api.conftest import jpeg_declaring, png_declaring
from tests.services import ApiServer

pytestmark = pytest.mark.integration

INFERENCE = "/api/v1/models/yolov4-tiny/inference"
BATCH = "/api/v1/models/yolov4-tiny/batch-inference"

Request = Callable[[list[bytes]], dict[str, Any]]
"""Builds httpx.request keyword arguments from the vtest JPEGs."""


def raw(body: bytes, content_type: str = "image/jpeg", path: str = INFERENCE) -> dict[str, Any]:
    return {"method": "POST", "url": path, "content": body, "headers": {"Content-Type": content_type}}


def as_json(document: Any, path: str = INFERENCE) -> dict[str, Any]:
    return {"method": "POST", "url": path, "json": document}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


BAD_INPUTS: dict[str, tuple[Request, int, str, str]] = {
    # name: (request, status, code, detail)
    "not an image": (lambda j: raw(b"this is not a picture at all"), 422, "INF_002", "corrupt-image"),
    "a truncated JPEG": (lambda j: raw(j[0][: len(j[0]) // 2]), 422, "INF_002", "corrupt-image"),
    "a JPEG header declaring 30000x30000": (lambda j: raw(jpeg_declaring(j[0], 30000, 30000)), 422, "INF_001",
                                            "too-many-pixels"),
    "a PNG header declaring 30000x30000": (lambda j: raw(png_declaring(30000, 30000), "image/png"), 422, "INF_001",
                                           "too-many-pixels"),
    "a GIF": (lambda j: raw(b"GIF89a" + b"\x00" * 64, "image/png"), 422, "INF_002", "corrupt-image"),
    "an oversized body": (lambda j: raw(b"\xff" * (4 * 1024 * 1024 + 1)), 413, "INF_001", "oversized-payload"),
    "a wrong content type": (lambda j: raw(j[0], "text/plain"), 415, "INF_001", "unsupported-media-type"),
    "no content type": (lambda j: raw(j[0], ""), 415, "INF_001", "unsupported-media-type"),
    "malformed JSON": (lambda j: raw(b'{"image": "abc', "application/json"), 400, "INF_001", "malformed-json"),
    "an unknown option": (lambda j: as_json({"image": b64(j[0]), "options": {"confidance": 0.5}}), 422, "INF_001",
                          "invalid-request"),
    "an unknown body field": (lambda j: as_json({"image": b64(j[0]), "colour": "red"}), 422, "INF_001",
                              "invalid-request"),
    "an unknown query parameter": (lambda j: {**raw(j[0]), "params": {"confidence": "0.3"}}, 422, "INF_001",
                                   "invalid-request"),
    "a threshold out of range": (lambda j: as_json({"image": b64(j[0]), "options": {"nmsThreshold": 1.5}}), 422,
                                 "INF_001", "invalid-request"),
    "an unsupported outputFormat": (lambda j: as_json({"image": b64(j[0]), "options": {"outputFormat": "coco"}}),
                                    422, "INF_001", "unsupported-output-format"),
    "invalid base64": (lambda j: as_json({"image": "not//base64!!"}), 422, "INF_001", "invalid-request"),
    "an image URL while URL images are off": (lambda j: as_json({"imageUrl": "http://127.0.0.1:1/x.jpg"}), 422,
                                              "INF_001", "url-images-disabled"),
    "both image and imageUrl": (lambda j: as_json({"image": b64(j[0]), "imageUrl": "http://x/y.jpg"}), 422,
                                "INF_001", "invalid-request"),
    "an empty batch": (lambda j: as_json({"images": []}, BATCH), 422, "INF_001", "invalid-request"),
    "a batch with one corrupt image": (lambda j: as_json({"images": [{"image": b64(j[0])}, {"image": b64(b"xx")}]},
                                                         BATCH), 422, "INF_002", "corrupt-image"),
    "a raw image to batch inference": (lambda j: raw(j[0], path=BATCH), 415, "INF_001", "unsupported-media-type"),
    "a multipart body without the file": (lambda j: {"method": "POST", "url": INFERENCE,
                                                     "data": {"options": "{}"}, "files": {"other": ("x", b"1")}},
                                          422, "INF_001", "invalid-request"),
    "an unknown model": (lambda j: raw(j[0], path="/api/v1/models/no-such-model/inference"), 404, "MODEL_001",
                         "not-found"),
    "an unknown version": (lambda j: raw(j[0], path="/api/v1/models/yolov4-tiny@9.9.9/inference"), 404,
                           "MODEL_001", "not-found"),
    "a malformed model reference": (lambda j: raw(j[0], path="/api/v1/models/Bad%20Name!/inference"), 404,
                                    "MODEL_001", "not-found"),
    "an unknown route": (lambda j: {"method": "GET", "url": "/api/v1/nothing-here"}, 404, "API_001",
                         "no-such-route"),
    "a wrong method": (lambda j: {"method": "GET", "url": INFERENCE}, 405, "API_001", "method-not-allowed"),
}


@pytest.fixture(scope="module")
def client(api_server: ApiServer) -> httpx.Client:
    with httpx.Client(base_url=api_server.url, headers=api_server.headers("system"), timeout=60) as client:
        yield client


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_gets_its_4xx_and_code_and_the_server_still_answers(name: str, client: httpx.Client,
                                                                       vtest_jpegs: list[bytes]) -> None:
    build, status, code, detail = BAD_INPUTS[name]

    response = client.request(**build(vtest_jpegs))

    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["code"], error["detail"]) == (code, detail), error
    assert error["message"] and "Traceback" not in response.text
    good = client.post(INFERENCE, content=vtest_jpegs[0], headers={"Content-Type": "image/jpeg"})
    assert good.status_code == 200, good.text


def test_an_oversized_chunked_body_is_refused_while_it_streams(client: httpx.Client) -> None:
    def chunks():
        for _ in range(80):
            yield b"\x00" * 65536  # 5 MiB in all, no Content-Length

    response = client.post(INFERENCE, content=chunks(), headers={"Content-Type": "image/jpeg"})

    assert response.status_code == 413
    assert response.json()["error"]["detail"] == "oversized-payload"
