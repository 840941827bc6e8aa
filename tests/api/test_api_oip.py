"""Open Inference Protocol v2: Triton's own HTTP client (``tritonclient.http``), unchanged, against a running
``camcount api``."""

from __future__ import annotations

from urllib.parse import urlsplit

import cv2
import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.services import ApiServer

pytestmark = pytest.mark.integration

MODEL = "yolov4-tiny"


@pytest.fixture(scope="module")
def client(api_server: ApiServer) -> triton.InferenceServerClient:
    client = triton.InferenceServerClient(urlsplit(api_server.url).netloc, connection_timeout=60,
                                          network_timeout=60)
    yield client
    client.close()


def _rest_detections(api_server: ApiServer, jpeg: bytes) -> list[dict]:
    response = httpx.post(f"{api_server.url}/api/v1/models/{MODEL}/inference", content=jpeg,
                          headers={**api_server.headers("system"), "Content-Type": "image/jpeg"}, timeout=60)
    return response.json()["results"]["detections"]


def _rows(detections: list[dict]) -> np.ndarray:
    return np.array([[*d["bbox"], d["confidence"], d["classId"]] for d in detections], dtype=np.float32)


def test_health_and_metadata_answer_triton_client_calls(client: triton.InferenceServerClient,
                                                        api_server: ApiServer) -> None:
    headers = api_server.headers("viewer")

    assert client.is_server_live() and client.is_server_ready()
    assert "binary_tensor_data" in client.get_server_metadata(headers=headers)["extensions"]
    metadata = client.get_model_metadata(MODEL, headers=headers)
    assert metadata["inputs"] == [{"name": "images", "datatype": "BYTES", "shape": [-1]}]
    assert {o["name"] for o in metadata["outputs"]} == {"detections", "num_detections"}
    assert client.is_model_ready(MODEL, headers=headers)


def test_oip_infer_answers_a_request_built_as_tritons_http_client_builds_it(
        client: triton.InferenceServerClient, api_server: ApiServer, vtest_jpegs: list[bytes]) -> None:
    jpegs = vtest_jpegs[:2]
    images = triton.InferInput("images", [len(jpegs)], "BYTES")
    images.set_data_from_numpy(np.array(jpegs, dtype=np.object_))  # binary tensor data, the client's default

    result = client.infer(MODEL, [images], headers=api_server.headers("system"))

    counts = result.as_numpy("num_detections")
    detections = result.as_numpy("detections")
    assert result.get_response()["model_version"] and detections.shape[0] == 2
    for index, jpeg in enumerate(jpegs):
        expected = _rows(_rest_detections(api_server, jpeg))
        assert counts[index] == len(expected)
        np.testing.assert_allclose(detections[index, :counts[index]], expected, atol=1e-3)


def test_oip_infer_takes_rgb_pixels_as_a_uint8_tensor_and_answers_json_outputs_when_asked(
        client: triton.InferenceServerClient, api_server: ApiServer, vtest_jpegs: list[bytes]) -> None:
    bgr = cv2.imdecode(np.frombuffer(vtest_jpegs[3], np.uint8), cv2.IMREAD_COLOR)
    pixels = triton.InferInput("images", [1, *bgr.shape], "UINT8")
    pixels.set_data_from_numpy(np.ascontiguousarray(bgr[None, :, :, ::-1]))
    outputs = [triton.InferRequestedOutput(name, binary_data=False) for name in ("detections", "num_detections")]

    result = client.infer(MODEL, [pixels], outputs=outputs, model_version="production",
                          headers=api_server.headers("system"))

    expected = _rows(_rest_detections(api_server, vtest_jpegs[3]))
    count = int(result.as_numpy("num_detections")[0])
    assert count == len(expected)
    np.testing.assert_allclose(result.as_numpy("detections")[0, :count], expected, atol=1e-3)


def test_oip_infer_needs_a_system_key(client: triton.InferenceServerClient, api_server: ApiServer,
                                      vtest_jpegs: list[bytes]) -> None:
    images = triton.InferInput("images", [1], "BYTES")
    images.set_data_from_numpy(np.array(vtest_jpegs[:1], dtype=np.object_))

    with pytest.raises(InferenceServerException) as refused:
        client.infer(MODEL, [images], headers=api_server.headers("viewer"))

    assert refused.value.status() == "403"
    assert "AUTH_003" in refused.value.message()  # OIP errors carry a string, as Triton clients expect


def test_an_oip_request_timeout_of_one_microsecond_gets_inf_004(api_server: ApiServer,
                                                                 vtest_jpegs: list[bytes]) -> None:
    import base64

    body = {"inputs": [{"name": "images", "shape": [1], "datatype": "BYTES",
                        "data": [base64.b64encode(vtest_jpegs[4]).decode()]}], "parameters": {"timeout": 1}}

    response = httpx.post(f"{api_server.url}/v2/models/{MODEL}/infer", json=body,
                          headers=api_server.headers("system"), timeout=60)

    assert response.status_code == 504, response.text
    assert response.json()["code"] == "INF_004" and response.json()["error"].startswith("INF_004 request-timeout")
