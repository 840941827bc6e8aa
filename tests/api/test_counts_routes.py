"""Counts over real HTTP: the API's line and zone counts equal what the analysts' SQL files return for the same range,
``tz`` moves bucket labels (and day boundaries), paging returns every row exactly once, bad input is 400 INF_001;
cameras and live totals come from ClickHouse and Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from foundation.clickhouse import clickhouse_client
from sinks.clickhouse import CROSSING_COLUMNS
from sinks.redis_live import camera_key, line_key, zone_key
from tests.services import ApiServer

pytestmark = pytest.mark.integration

QUERIES = Path(__file__).resolve().parents[2] / "infra" / "clickhouse" / "queries"
FROM, TO = "2024-04-30T00:00:00Z", "2024-05-02T00:00:00Z"
SQL_RANGE = {"start": "2024-04-30 00:00:00", "end": "2024-05-02 00:00:00"}
RUN = uuid.uuid4().hex[:6]
CAMERAS = (f"gate-{RUN}-a", f"gate-{RUN}-b")
# (camera, line, UTC time, direction, class): spread over minutes, hours and a UTC day boundary
CROSSINGS = [
    (CAMERAS[0], "L1", datetime(2024, 4, 30, 23, 30, 5), "in", "person"),
    (CAMERAS[0], "L1", datetime(2024, 5, 1, 10, 15, 1), "in", "person"),
    (CAMERAS[0], "L1", datetime(2024, 5, 1, 10, 15, 40), "out", "person"),
    (CAMERAS[0], "L1", datetime(2024, 5, 1, 10, 44, 0), "in", "person"),
    (CAMERAS[0], "L2", datetime(2024, 5, 1, 10, 50, 0), "out", "person"),
    (CAMERAS[0], "L1", datetime(2024, 5, 1, 11, 5, 0), "in", "car"),
    (CAMERAS[1], "L1", datetime(2024, 5, 1, 10, 20, 0), "in", "person"),
    (CAMERAS[1], "L1", datetime(2024, 5, 1, 12, 59, 59), "out", "person"),
    (CAMERAS[1], "door", datetime(2024, 5, 1, 13, 0, 0), "in", "person"),
]


@pytest.fixture(scope="module")
def counted(api_server: ApiServer) -> Iterator[None]:
    """The crossings above (each inserted twice, as a replay would) and two zone minutes, in the server's database."""
    rows = []
    for seq, (camera, line, at, direction, class_name) in enumerate(CROSSINGS):
        rows.append({"event_id": f"{camera}-{seq}", "camera_id": camera, "frame_seq": seq, "capture_time": at,
                     "capture_ts_ms": int(at.replace(tzinfo=UTC).timestamp() * 1000), "line": line,
                     "direction": direction, "track_id": seq, "class_name": class_name, "model_name": "yolo",
                     "model_version": "1.0.0", "variant": "", "experiment": ""})
    zones = [{"camera_id": CAMERAS[0], "zone": "yard", "class_name": "person", "minute": minute, "frames": 60,
              "max_occupancy": peak, "occupancy_sum": total, "entries": 2, "exits": exits, "dwell_ms_sum": 9000,
              "model_name": "yolo", "model_version": "1.0.0", "variant": "", "experiment": "", "updated_ms": 1}
             for minute, peak, total, exits in ((datetime(2024, 5, 1, 10, 15), 3, 120, 1),
                                                (datetime(2024, 5, 1, 10, 16), 5, 200, 0))]
    client = clickhouse_client(api_server.settings)
    try:
        for _ in range(2):
            client.execute(f"INSERT INTO crossing_events ({', '.join(CROSSING_COLUMNS)}) VALUES",
                           [{c: row[c] for c in CROSSING_COLUMNS} for row in rows])
        client.execute(f"INSERT INTO zone_occupancy ({', '.join(zones[0])}) VALUES", zones)
    finally:
        client.disconnect()
    yield


def _get(api_server: ApiServer, path: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{api_server.url}{path}", params={k: v for k, v in params.items() if v is not None},
                     headers=api_server.headers("viewer"), timeout=30)


def _all_pages(api_server: ApiServer, path: str, **params: Any) -> tuple[list[dict], int]:
    rows, cursor, pages = [], None, 0
    while True:
        response = _get(api_server, path, cursor=cursor, **params)
        assert response.status_code == 200, response.text
        rows += response.json()["rows"]
        pages += 1
        cursor = response.json()["nextCursor"]
        if cursor is None:
            return rows, pages


def _ours(rows: list[dict]) -> list[dict]:
    return [row for row in rows if row["cameraId"] in CAMERAS]


def _analysts(api_server: ApiServer, file: str, **params: Any) -> list[tuple]:
    client = clickhouse_client(api_server.settings)
    try:
        return client.execute((QUERIES / file).read_text(), {**SQL_RANGE, **params})
    finally:
        client.disconnect()


def _epoch(moment: datetime | str) -> int:
    if isinstance(moment, str):
        return int(datetime.fromisoformat(moment).timestamp())
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())


def test_hourly_line_counts_equal_the_analysts_net_flow_query(api_server: ApiServer, counted: None) -> None:
    api, _ = _all_pages(api_server, "/api/v1/counts/lines", **{"from": FROM, "to": TO, "interval": "hour",
                                                                "class": "person", "limit": 1000})
    sql = _analysts(api_server, "net_flow_per_line_hour.sql", class_name="person")

    expected = {(camera, line, _epoch(hour), entered, exited) for camera, line, hour, entered, exited, _, _ in sql
                if camera in CAMERAS}
    assert {(r["cameraId"], r["line"], _epoch(r["bucket"]), r["entered"], r["exited"]) for r in _ours(api)} == expected
    assert len(expected) == 6  # each crossing counted once although inserted twice


def test_minute_line_counts_equal_the_analysts_busiest_minutes(api_server: ApiServer, counted: None) -> None:
    api, _ = _all_pages(api_server, "/api/v1/counts/lines", **{"from": FROM, "to": TO, "interval": "minute",
                                                                "limit": 1000})
    per_minute: dict[tuple[int, str], list[int]] = {}
    for row in _ours(api):
        totals = per_minute.setdefault((_epoch(row["bucket"]), row["cameraId"]), [0, 0])
        totals[0] += row["entered"]
        totals[1] += row["exited"]
    sql = _analysts(api_server, "busiest_minutes.sql", top=10_000)

    assert per_minute == {(_epoch(minute), camera): [entered, exited]
                          for minute, camera, _, entered, exited in sql if camera in CAMERAS}


def test_hourly_zone_counts_equal_the_analysts_zone_query(api_server: ApiServer, counted: None) -> None:
    api, _ = _all_pages(api_server, "/api/v1/counts/zones", **{"from": FROM, "to": TO, "interval": "hour"})
    sql = _analysts(api_server, "zone_occupancy_per_hour.sql")

    assert [(_epoch(r["bucket"]), r["cameraId"], r["zone"], r["className"], r["framesCounted"], r["avgOccupancy"],
             r["peakOccupancy"], r["entered"], r["exited"], r["meanDwellS"]) for r in _ours(api)] == [
        (_epoch(row[0]), *row[1:]) for row in sql if row[1] in CAMERAS]
    assert _ours(api)[0]["avgOccupancy"] == pytest.approx(320 / 120)


def test_tz_shifts_bucket_labels_and_day_boundaries(api_server: ApiServer, counted: None) -> None:
    def buckets(tz: str, interval: str, camera: str = CAMERAS[0], line: str = "L1") -> dict[str, tuple[int, int]]:
        rows, _ = _all_pages(api_server, "/api/v1/counts/lines", **{"from": FROM, "to": TO, "interval": interval,
                                                                     "tz": tz, "camera": camera, "line": line,
                                                                     "class": "person"})
        return {r["bucket"]: (r["entered"], r["exited"]) for r in rows}

    assert buckets("UTC", "hour") == {"2024-04-30T23:00:00+00:00": (1, 0), "2024-05-01T10:00:00+00:00": (2, 1)}
    assert buckets("Asia/Kolkata", "hour") == {"2024-05-01T05:00:00+05:30": (1, 0),  # 23:30 UTC
                                               "2024-05-01T15:00:00+05:30": (1, 1),  # 09:30-10:30 UTC
                                               "2024-05-01T16:00:00+05:30": (1, 0)}  # 10:44 UTC
    assert buckets("UTC", "day") == {"2024-04-30T00:00:00+00:00": (1, 0), "2024-05-01T00:00:00+00:00": (2, 1)}
    assert buckets("Europe/Paris", "day") == {"2024-05-01T00:00:00+02:00": (3, 1)}  # 23:30 UTC is 01:30 in Paris
    page = _get(api_server, "/api/v1/counts/lines", **{"from": "2024-05-01T00:00:00", "to": "2024-05-02T00:00:00",
                                                       "tz": "Europe/Paris", "interval": "day"}).json()
    assert (page["from"], page["to"], page["tz"]) == ("2024-05-01T00:00:00+02:00", "2024-05-02T00:00:00+02:00",
                                                      "Europe/Paris")


def test_paging_returns_every_row_exactly_once(api_server: ApiServer, counted: None) -> None:
    params = {"from": FROM, "to": TO, "interval": "minute", "camera": CAMERAS[0]}
    whole, _ = _all_pages(api_server, "/api/v1/counts/lines", limit=1000, **params)
    paged, pages = _all_pages(api_server, "/api/v1/counts/lines", limit=2, **params)

    assert len(whole) == 5 and pages == 3  # two crossings share the minute 10:15
    assert paged == whole
    assert len({(r["bucket"], r["line"], r["className"]) for r in paged}) == len(paged)


@pytest.mark.parametrize("params, detail", [
    ({"tz": "Mars/Olympus_Mons"}, "invalid-time-zone"),
    ({"tz": "../../etc/passwd"}, "invalid-time-zone"),
    ({"from": "2024-05-02T00:00:00Z", "to": "2024-05-01T00:00:00Z"}, "invalid-time-range"),
    ({"from": "yesterday"}, "invalid-time-range"),
    ({"from": "2024-01-01T00:00:00Z", "to": "2024-03-01T00:00:00Z", "interval": "minute"}, "invalid-time-range"),
    ({"interval": "week"}, "invalid-counts-query"),
    ({"cursor": "bm90LWEtY3Vyc29y"}, "invalid-counts-query"),
])
@pytest.mark.parametrize("path", ["/api/v1/counts/lines", "/api/v1/counts/zones"])
def test_bad_tz_range_or_paging_is_400_inf_001(api_server: ApiServer, path: str, params: dict, detail: str) -> None:
    response = _get(api_server, path, **params)

    assert response.status_code == 400, response.text
    assert (response.json()["error"]["code"], response.json()["error"]["detail"]) == ("INF_001", detail)


def test_cameras_and_live_totals(api_server: ApiServer, counted: None, redis_client: redis.Redis) -> None:
    prefix = api_server.settings.redis.key_prefix
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    live_camera = f"live-{RUN}:east"  # a ':' in a camera id must not confuse the key layout
    redis_client.hset(camera_key(prefix, live_camera), mapping={"last_frame_seq": 42, "last_capture_ts_ms": now_ms,
                                                                "updated_ms": now_ms})
    redis_client.hset(zone_key(prefix, live_camera, "yard"), mapping={"person": 3})
    redis_client.hset(line_key(prefix, live_camera, "L1", now_ms), mapping={"in": 5, "out": 2, "in:person": 4,
                                                                           "in:car": 1, "out:person": 2})
    try:
        cameras, cursor = [], None
        while True:
            page = _get(api_server, "/api/v1/cameras", limit=1, cursor=cursor).json()
            cameras += page["cameras"]
            if (cursor := page["nextCursor"]) is None:
                break
        by_id = {c["cameraId"]: c for c in cameras}
        assert len(by_id) == len(cameras)
        assert (by_id[CAMERAS[0]]["lines"], by_id[CAMERAS[0]]["zones"]) == (["L1", "L2"], ["yard"])
        assert by_id[CAMERAS[1]]["lines"] == ["L1", "door"] and by_id[CAMERAS[1]]["live"] is None
        assert by_id[live_camera]["live"]["lastFrameSeq"] == 42
        assert by_id[live_camera]["live"]["streamEnded"] is False  # a hash written before stream_ended was kept
        assert by_id[live_camera]["live"]["silenceEnded"] is False

        live = _get(api_server, "/api/v1/live", camera=live_camera, tz="Europe/Paris").json()
        (camera,) = live["cameras"]
        assert camera["zones"] == {"yard": {"person": 3}}
        assert camera["lines"] == {"L1": {"entered": 5, "exited": 2, "byClass": {
            "person": {"entered": 4, "exited": 2}, "car": {"entered": 1, "exited": 0}}}}
        assert camera["lastCaptureTime"].endswith(("+01:00", "+02:00"))
        everyone = _get(api_server, "/api/v1/live").json()["cameras"]
        assert live_camera in {c["cameraId"] for c in everyone}
    finally:
        redis_client.delete(camera_key(prefix, live_camera), zone_key(prefix, live_camera, "yard"),
                            line_key(prefix, live_camera, "L1", now_ms))
