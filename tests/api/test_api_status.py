"""Model status (this process) and model metrics (ClickHouse history) over real HTTP."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.services import ApiServer, clickhouse_client_for

pytestmark = pytest.mark.integration


def _get(api_server: ApiServer, path: str, **params: str) -> httpx.Response:
    return httpx.get(f"{api_server.url}{path}", params=params, headers=api_server.headers("viewer"), timeout=30)


def test_the_production_model_is_ready_with_its_version_and_this_processs_resources(
        api_server: ApiServer, vtest_jpegs: list[bytes]) -> None:
    httpx.post(f"{api_server.url}/api/v1/models/yolov4-tiny/inference", content=vtest_jpegs[0] + b"\x00" * 5,
               headers={**api_server.headers("viewer"), "Content-Type": "image/jpeg"}, timeout=60)

    status = _get(api_server, "/api/v1/models/yolov4-tiny/status").json()

    assert (status["status"], status["version"], status["provider"]) == ("ready", "1.0.0", "CPUExecutionProvider")
    assert status["avgLatency"] > 0 and status["throughput"] > 0 and status["lastUpdated"].endswith("Z")
    assert status["resources"]["rssBytes"] > 50_000_000 and status["resources"]["threads"] >= 1


def test_a_registered_version_not_loaded_here_is_unavailable(api_server: ApiServer) -> None:
    status = _get(api_server, "/api/v1/models/promo-yolo@2.0.0/status").json()

    if status["status"] != "ready":  # the cache test may have loaded it; otherwise it is only registered
        assert status["status"] == "unavailable" and status["avgLatency"] is None


def test_an_unknown_model_has_no_status(api_server: ApiServer) -> None:
    response = _get(api_server, "/api/v1/models/no-such-model/status")

    assert response.status_code == 404 and response.json()["error"]["code"] == "MODEL_001"


def test_metrics_read_the_api_request_log_from_clickhouse(api_server: ApiServer, vtest_jpegs: list[bytes]) -> None:
    for _ in range(2):
        httpx.post(f"{api_server.url}/api/v1/models/yolov4-tiny/inference", content=vtest_jpegs[3] + b"\x00" * 6,
                   headers={**api_server.headers("viewer"), "Content-Type": "image/jpeg"}, timeout=60)
    start = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    deadline, series = time.monotonic() + 15, {}
    while time.monotonic() < deadline:  # the request log is written in the background, every 0.2 s here
        response = _get(api_server, "/api/v1/models/yolov4-tiny/metrics", **{
            "from": start, "metrics": "requests,images,cache_hit_rate,latency_p95_ms,frames"})
        assert response.status_code == 200, response.text + api_server.log_tail()
        series = response.json()["metrics"]
        if sum(point["value"] for point in series["requests"]) >= 2:
            break
        time.sleep(0.3)

    assert sum(p["value"] for p in series["requests"]) >= 2 and sum(p["value"] for p in series["images"]) >= 2
    assert 0 < max(p["value"] for p in series["cache_hit_rate"]) <= 1
    assert series["frames"] == []  # no stream worker used this model in this database
    assert all(p["time"].endswith("Z") for p in series["requests"])


def test_the_request_log_records_who_asked_what_and_the_answer(api_server: ApiServer) -> None:
    _get(api_server, "/api/v1/models/no-such-model/status")
    client = clickhouse_client_for(api_server.settings)
    try:
        deadline, rows = time.monotonic() + 15, []
        while time.monotonic() < deadline and not rows:
            rows = client.execute("SELECT route, status, error_code, key_id FROM api_requests FINAL "
                                  "WHERE route = '/api/v1/models/{modelId}/status' AND status = 404 "
                                  "AND key_id = 'key-viewer'")
            time.sleep(0.2)
    finally:
        client.disconnect()

    assert rows and rows[0][2:] == ("MODEL_001", "key-viewer")


def test_unknown_metric_names_are_refused(api_server: ApiServer) -> None:
    response = _get(api_server, "/api/v1/models/yolov4-tiny/metrics", metrics="requests,bogus")

    assert response.status_code == 422 and response.json()["error"]["code"] == "INF_001"
    assert "bogus" in response.json()["error"]["message"]


@pytest.mark.parametrize("bound", ["0001-01-01T00:00:00+05:00", "1969-12-31T00:00:00", "9999-12-31T23:59:59-05:00"])
def test_a_metrics_range_outside_what_clickhouse_stores_is_refused(api_server: ApiServer, bound: str) -> None:
    response = _get(api_server, "/api/v1/models/yolov4-tiny/metrics", **{"from": bound})

    assert response.status_code == 422 and response.json()["error"]["code"] == "INF_001"
    assert "outside the times ClickHouse stores" in response.json()["error"]["message"]


def test_metrics_read_the_stream_workers_inference_log(api_server: ApiServer) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    rows = [("cam-metrics", seq, now, int(now.timestamp() * 1000), "promo-yolo", "1.0.0", "control", "",
             status, 4, 0.5, 20.0 + seq, 90.0) for seq, status in ((1, "ok"), (2, "ok"), (3, "error"))]
    client = clickhouse_client_for(api_server.settings)
    try:
        client.execute("INSERT INTO inference_log (camera_id, frame_seq, capture_time, capture_ts_ms, model_name, "
                       "model_version, variant, experiment, status, detections, mean_confidence, infer_ms, e2e_ms) "
                       "VALUES", rows)
    finally:
        client.disconnect()

    response = _get(api_server, "/api/v1/models/promo-yolo@1.0.0/metrics", step="hour",
                    metrics="frames,frame_errors,infer_ms_avg,detections_per_frame",
                    **{"from": (now - timedelta(hours=1)).isoformat(), "to": (now + timedelta(minutes=1)).isoformat()})

    series = response.json()["metrics"]
    assert [p["value"] for p in series["frames"]] == [3.0] and [p["value"] for p in series["frame_errors"]] == [1.0]
    assert series["infer_ms_avg"][0]["value"] == pytest.approx(21.5)
    assert series["detections_per_frame"][0]["value"] == 4.0
