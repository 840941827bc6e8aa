"""REST inference over real HTTP against a running ``camcount api``: the same boxes as the offline detector, in
every body format, singly and in batches."""

from __future__ import annotations

import base64

import cv2
import httpx
import numpy as np
import pytest

from foundation.settings import Settings
from models.detector import Detector
from models.loading import open_model_registry
from tests.services import ApiServer

pytestmark = pytest.mark.integration

MODEL = "yolov4-tiny"


@pytest.fixture(scope="module")
def offline_detector(api_server: ApiServer) -> Detector:
    settings: Settings = api_server.settings
    registry = open_model_registry(settings)
    return Detector.from_model(registry.resolve(f"{MODEL}@production"), providers=["CPUExecutionProvider"])


def _infer(api_server: ApiServer, jpeg: bytes, **options: object) -> dict:
    response = httpx.post(f"{api_server.url}/api/v1/models/{MODEL}/inference", content=jpeg,
                          params={k: str(v) for k, v in options.items()},
                          headers={**api_server.headers("system"), "Content-Type": "image/jpeg"}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def _boxes(detections: list[dict]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    return (np.array([d["bbox"] for d in detections], dtype=np.float64).reshape(-1, 4),
            np.array([d["confidence"] for d in detections]), [d["classId"] for d in detections])


def test_inference_on_a_vtest_frame_returns_the_offline_detectors_boxes(api_server: ApiServer,
                                                                        offline_detector: Detector,
                                                                        vtest_jpegs: list[bytes]) -> None:
    jpeg = vtest_jpegs[1]
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    (expected,) = offline_detector.detect([image])

    answer = _infer(api_server, jpeg, maxDetections=297)  # an option no other test uses: computed, not cached

    assert not answer["cached"] and answer["version"] == offline_detector.version
    boxes, scores, classes = _boxes(answer["results"]["detections"])
    assert len(expected) > 3
    assert classes == expected.class_id.tolist()
    np.testing.assert_allclose(boxes, expected.xyxy, atol=0.05)
    np.testing.assert_allclose(scores, expected.confidence, atol=1e-4)
    assert (answer["results"]["imageWidth"], answer["results"]["imageHeight"]) == (image.shape[1], image.shape[0])


def test_the_response_has_the_documented_fields(api_server: ApiServer, vtest_jpegs: list[bytes]) -> None:
    answer = _infer(api_server, vtest_jpegs[0])

    assert set(answer) == {"modelId", "model", "version", "inferenceId", "results", "processingTime", "timestamp",
                           "cached"}
    assert answer["modelId"] == MODEL and answer["timestamp"].endswith("Z") and answer["processingTime"] > 0
    assert set(answer["results"]["detections"][0]) == {"class", "classId", "confidence", "bbox"}


def test_batch_inference_equals_per_image_inference(api_server: ApiServer, vtest_jpegs: list[bytes]) -> None:
    images = vtest_jpegs[2:5]
    singles = [_infer(api_server, jpeg, maxDetections=298)["results"] for jpeg in images]

    response = httpx.post(f"{api_server.url}/api/v1/models/{MODEL}/batch-inference",
                          json={"images": [{"image": base64.b64encode(j).decode()} for j in images],
                                "options": {"maxDetections": 299}},  # another cache key: inferred again
                          headers=api_server.headers("system"), timeout=60)

    assert response.status_code == 200, response.text
    batch = response.json()
    assert batch["batchSize"] == 3 and [r["imageIndex"] for r in batch["results"]] == [0, 1, 2]
    assert not any(r["cached"] for r in batch["results"]) and batch["totalProcessingTime"] > 0
    for single, result in zip(singles, batch["results"], strict=True):
        got, want = _boxes(result["detections"]), _boxes(single["detections"])
        assert got[2] == want[2]
        np.testing.assert_allclose(got[0], want[0], atol=0.05)
        np.testing.assert_allclose(got[1], want[1], atol=1e-4)


def test_json_multipart_and_raw_bodies_give_the_same_detections(api_server: ApiServer,
                                                                 vtest_jpegs: list[bytes]) -> None:
    jpeg, url = vtest_jpegs[5], f"{api_server.url}/api/v1/models/{MODEL}/inference"
    headers = api_server.headers("viewer")
    raw = httpx.post(url, content=jpeg, headers={**headers, "Content-Type": "image/jpeg"}, timeout=60)
    as_json = httpx.post(url, json={"image": base64.b64encode(jpeg).decode()}, headers=headers, timeout=60)
    multipart = httpx.post(url, files={"image": ("frame.jpg", jpeg, "image/jpeg")}, headers=headers, timeout=60)

    answers = [r.json()["results"]["detections"] for r in (raw, as_json, multipart)]
    assert answers[0] == answers[1] == answers[2] and answers[0]


def test_a_png_is_accepted(api_server: ApiServer, vtest_frames: list[np.ndarray]) -> None:
    png = cv2.imencode(".png", vtest_frames[0][:240, :320])[1].tobytes()

    response = httpx.post(f"{api_server.url}/api/v1/models/{MODEL}/inference", content=png,
                          headers={**api_server.headers("viewer"), "Content-Type": "image/png"}, timeout=60)

    assert response.status_code == 200, response.text
    assert response.json()["results"]["imageWidth"] == 320
