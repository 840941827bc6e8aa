"""Counts for dashboards (role ``viewer``): cameras, line crossings and zone occupancy over a time range from
ClickHouse, and live totals from Redis.

- ``GET /api/v1/cameras``: cameras with counts in ClickHouse or live state in Redis, with the lines and zones counted;
- ``GET /api/v1/counts/lines``: crossings per bucket, camera, line and class (``entered``, ``exited``, ``net``);
- ``GET /api/v1/counts/zones``: occupancy per bucket, camera, zone and class;
- ``GET /api/v1/live``: per camera, the last counted frame, current zone occupancy and today's (UTC) line totals.

Counts come from the same replay-safe tables and views analysts query (``sinks.count_queries``), so a replayed or
re-inserted event never counts twice. Time parameters: ``from`` and ``to`` are ISO-8601 (a time without an offset
is in ``tz``; default: the last 24 hours); the range holds the minutes that begin in ``[from, to)``; ``tz`` is an
IANA time zone (default ``UTC``) in which buckets are cut and every time is rendered; ``interval`` is ``minute``,
``hour`` (default) or ``day``. An unknown ``tz``, a bad time or an empty or too long range is 400 INF_001. Paging:
``limit`` rows (1-1000) and the ``cursor`` of the previous page (``nextCursor``; null on the last page).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from clickhouse_driver.errors import ServerException
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from api.auth import Principal, Role, requires
from api.errors import error_responses
from api.services import ApiServices, services_of
from foundation.clickhouse import ClickHouseUnavailable, is_unavailable
from sinks import count_queries
from sinks.count_queries import CountsRange, Filters, InvalidTimeZone, Run, runner, time_zone
from sinks.redis_live import LiveStateUnavailable, last_frames, live_cameras, reachable, read_live

router = APIRouter(tags=["counts"])

ERRORS = error_responses(400, 401, 403, 422, 429, 503)
FROM = Query(None, alias="from", description="start, ISO-8601 (default: 24 hours before `to`)",
             examples=["2024-05-01T00:00:00Z"])
TO = Query(None, alias="to", description="end, exclusive, ISO-8601 (default: now)",
           examples=["2024-05-02T00:00:00Z"])
TZ = Query("UTC", description="IANA time zone of buckets and rendered times", examples=["Europe/Paris"])
INTERVAL = Query("hour", description="bucket size: minute, hour or day")
LIMIT = Query(100, ge=1, le=count_queries.MAX_PAGE, description="rows per page")
CURSOR = Query(None, description="nextCursor of the previous page")


class LineCount(BaseModel):
    bucket: str = Field(description="the bucket's start, ISO-8601 in tz")
    cameraId: str  # noqa: N815 - the API's JSON names
    line: str
    className: str  # noqa: N815
    entered: int = Field(description="crossings in the line's 'in' direction")
    exited: int = Field(description="crossings in the 'out' direction")
    net: int = Field(description="entered - exited")


class ZoneCount(BaseModel):
    bucket: str
    cameraId: str  # noqa: N815
    zone: str
    className: str  # noqa: N815
    framesCounted: int  # noqa: N815
    avgOccupancy: float | None = Field(description="objects in the zone, mean over the counted frames")  # noqa: N815
    peakOccupancy: int  # noqa: N815
    entered: int
    exited: int
    meanDwellS: float | None = Field(description="mean dwell of the objects that left, seconds")  # noqa: N815


class CountsPage(BaseModel):
    from_: str = Field(alias="from")
    to: str
    tz: str
    interval: str
    nextCursor: str | None  # noqa: N815


class LineCountsPage(CountsPage):
    rows: list[LineCount]


class ZoneCountsPage(CountsPage):
    rows: list[ZoneCount]


class LiveState(BaseModel):
    lastFrameSeq: int | None  # noqa: N815
    lastCaptureTime: str | None  # noqa: N815
    updatedAt: str | None  # noqa: N815
    streamEnded: bool = Field(  # noqa: N815
        description="the camera's stream ended after lastFrameSeq (its ingest stopped and every track was ended); "
                    "false while frames come")
    silenceEnded: bool = Field(  # noqa: N815
        description="nothing came after lastFrameSeq for counting.silent_camera_end_s, and no end of stream either "
                    "(its ingest died): the counting app ended every track; false while frames come")


class Camera(BaseModel):
    cameraId: str  # noqa: N815
    lines: list[str] = Field(description="lines with counted crossings")
    zones: list[str] = Field(description="zones with counted occupancy")
    firstSeen: str | None = Field(description="first hour (lines) or minute (zones) with counts")  # noqa: N815
    lastSeen: str | None  # noqa: N815
    live: LiveState | None = Field(description="last counted frame, while Redis holds it (1 day)")


class CameraPage(BaseModel):
    cameras: list[Camera]
    nextCursor: str | None  # noqa: N815


class LiveLine(BaseModel):
    entered: int
    exited: int
    byClass: dict[str, dict[str, int]] = Field(description="class -> {entered, exited}")  # noqa: N815


class LiveCamera(LiveState):
    cameraId: str  # noqa: N815
    zones: dict[str, dict[str, int]] = Field(description="zone -> class -> objects in it now")
    lines: dict[str, LiveLine] = Field(description="line -> today's totals (UTC day)")


class LivePage(BaseModel):
    day: str = Field(description="the UTC day of the line totals, YYYY-MM-DD")
    cameras: list[LiveCamera]
    nextCursor: str | None  # noqa: N815


async def _on_clickhouse(services: ApiServices, work: Callable[[Run], Any],
                         tz: str = "UTC") -> Any:
    """``work(run)`` in a thread on a fresh ClickHouse client; SYS_002 when ClickHouse cannot be reached."""
    def call() -> Any:
        if services.clickhouse is None:
            raise ClickHouseUnavailable("this API runs without ClickHouse")
        client = services.clickhouse()
        try:
            return work(runner(client))
        except ServerException as exc:
            if "time zone" in str(exc).lower() or "timezone" in str(exc).lower():
                raise InvalidTimeZone(f"tz {tz!r} is not known to ClickHouse",
                                      remedy="send another IANA name for the same zone") from exc
            if is_unavailable(exc):
                raise _unavailable(exc) from exc
            raise
        except Exception as exc:
            if is_unavailable(exc):
                raise _unavailable(exc) from exc
            raise
        finally:
            client.disconnect()

    return await asyncio.to_thread(call)


def _unavailable(exc: BaseException) -> ClickHouseUnavailable:
    return ClickHouseUnavailable(f"ClickHouse cannot be reached: {' '.join(str(exc).split()[:12])}",
                                 remedy="start it or fix CLICKHOUSE_URL, then retry")


def _window(start: str | None, end: str | None, tz: str, interval: str) -> CountsRange:
    return CountsRange.parse(start, end, tz, interval, now=datetime.now(UTC))


def _page_fields(window: CountsRange, next_cursor: str | None) -> dict[str, Any]:
    return {"from": window.start.astimezone(window.tz).isoformat(), "to": window.end.astimezone(window.tz).isoformat(),
            "tz": window.tz.key, "interval": window.interval, "nextCursor": next_cursor}


@router.get("/api/v1/counts/lines", response_model=LineCountsPage, response_model_by_alias=True, responses=ERRORS,
            summary="Line crossings per time bucket, camera, line and class")
async def line_counts(start: str | None = FROM, end: str | None = TO, tz: str = TZ, interval: str = INTERVAL,
                      camera: str | None = Query(None, description="only this camera"),
                      line: str | None = Query(None, description="only this line"),
                      class_name: str | None = Query(None, alias="class", description="only this object class"),
                      limit: int = LIMIT, cursor: str | None = CURSOR,
                      _: Principal = Depends(requires(Role.VIEWER)),
                      services: ApiServices = Depends(services_of)) -> dict[str, Any]:
    window = _window(start, end, tz, interval)
    rows, next_cursor = await _on_clickhouse(
        services, lambda run: count_queries.line_counts(run, window, Filters(camera, line, class_name), limit, cursor),
        tz)
    return {**_page_fields(window, next_cursor), "rows": [
        {"bucket": window.render(r["bucket"]), "cameraId": r["camera_id"], "line": r["line"],
         "className": r["class_name"], "entered": r["entered"], "exited": r["exited"],
         "net": r["entered"] - r["exited"]} for r in rows]}


@router.get("/api/v1/counts/zones", response_model=ZoneCountsPage, response_model_by_alias=True, responses=ERRORS,
            summary="Zone occupancy per time bucket, camera, zone and class")
async def zone_counts(start: str | None = FROM, end: str | None = TO, tz: str = TZ, interval: str = INTERVAL,
                      camera: str | None = Query(None, description="only this camera"),
                      zone: str | None = Query(None, description="only this zone"),
                      class_name: str | None = Query(None, alias="class", description="only this object class"),
                      limit: int = LIMIT, cursor: str | None = CURSOR,
                      _: Principal = Depends(requires(Role.VIEWER)),
                      services: ApiServices = Depends(services_of)) -> dict[str, Any]:
    window = _window(start, end, tz, interval)
    rows, next_cursor = await _on_clickhouse(
        services, lambda run: count_queries.zone_counts(run, window, Filters(camera, zone, class_name), limit, cursor),
        tz)
    return {**_page_fields(window, next_cursor), "rows": [
        {"bucket": window.render(r["bucket"]), "cameraId": r["camera_id"], "zone": r["zone"],
         "className": r["class_name"], "framesCounted": r["frames_counted"], "avgOccupancy": r["avg_occupancy"],
         "peakOccupancy": r["peak_occupancy"], "entered": r["entered"], "exited": r["exited"],
         "meanDwellS": r["mean_dwell_s"]} for r in rows]}


def _iso(epoch_ms: int | None, tz: Any) -> str | None:
    return None if epoch_ms is None else datetime.fromtimestamp(epoch_ms / 1000, tz).isoformat()


def _live_state(state: dict[str, Any], tz: Any) -> dict[str, Any]:
    return {"lastFrameSeq": state.get("last_frame_seq"), "lastCaptureTime": _iso(state.get("last_capture_ts_ms"), tz),
            "updatedAt": _iso(state.get("updated_ms"), tz), "streamEnded": bool(state.get("stream_ended", 0)),
            "silenceEnded": bool(state.get("silence_ended", 0))}


async def _on_redis(services: ApiServices, work: Callable[[], Any]) -> Any:
    """``work()`` in a thread; SYS_003 when the live state's Redis cannot be reached."""
    if services.live_redis is None:
        raise LiveStateUnavailable("this API runs without Redis")

    def call() -> Any:
        with reachable(services.live_redis):
            return work()

    return await asyncio.to_thread(call)


@router.get("/api/v1/cameras", response_model=CameraPage, responses=ERRORS,
            summary="Cameras with counts or live state, with their counted lines and zones")
async def cameras(tz: str = TZ, limit: int = LIMIT, cursor: str | None = CURSOR,
                  _: Principal = Depends(requires(Role.VIEWER)),
                  services: ApiServices = Depends(services_of)) -> dict[str, Any]:
    zone = time_zone(tz)
    after = cursor or ""
    counted = await _on_clickhouse(services, lambda run: count_queries.counted_cameras(run, after, limit + 1))
    prefix = services.settings.redis.key_prefix
    live_ids = [c for c in await _on_redis(services, lambda: live_cameras(services.live_redis, prefix)) if c > after]
    by_id = {row["camera_id"]: row for row in counted}
    ids = sorted(set(by_id) | set(live_ids))
    page, more = ids[:limit], len(ids) > limit
    live_on_page = [c for c in page if c in set(live_ids)]
    live = await _on_redis(services, lambda: last_frames(services.live_redis, prefix, live_on_page))
    result = []
    for camera_id in page:
        row = by_id.get(camera_id, {})
        result.append({
            "cameraId": camera_id, "lines": row.get("lines", []), "zones": row.get("zones", []),
            "firstSeen": _iso(row["first_seen"] * 1000, zone) if row else None,
            "lastSeen": _iso(row["last_seen"] * 1000, zone) if row else None,
            "live": _live_state(live[camera_id], zone) if camera_id in live else None})
    return {"cameras": result, "nextCursor": page[-1] if more else None}


def _live_lines(lines: dict[str, dict[str, int]]) -> dict[str, dict[str, Any]]:
    out = {}
    for line, totals in lines.items():
        by_class: dict[str, dict[str, int]] = {}
        for field, count in totals.items():
            direction, _, class_name = field.partition(":")
            if class_name:
                by_class.setdefault(class_name, {"entered": 0, "exited": 0})[
                    "entered" if direction == "in" else "exited"] = count
        out[line] = {"entered": totals.get("in", 0), "exited": totals.get("out", 0), "byClass": by_class}
    return out


@router.get("/api/v1/live", response_model=LivePage, responses=ERRORS,
            summary="Live state per camera: last frame, zone occupancy now, today's line totals (UTC day)")
async def live(camera: str | None = Query(None, description="only this camera"), tz: str = TZ,
               limit: int = LIMIT, cursor: str | None = CURSOR,
               _: Principal = Depends(requires(Role.VIEWER)),
               services: ApiServices = Depends(services_of)) -> dict[str, Any]:
    zone = time_zone(tz)
    prefix = services.settings.redis.key_prefix
    today = datetime.now(UTC)
    if camera is not None:
        ids = [camera] if camera > (cursor or "") else []
    else:
        ids = [c for c in await _on_redis(services, lambda: live_cameras(services.live_redis, prefix))
               if c > (cursor or "")]
    page, more = ids[:limit], len(ids) > limit
    state = await _on_redis(services, lambda: read_live(services.live_redis, prefix, page, today.strftime("%Y%m%d")))
    return {"day": today.strftime("%Y-%m-%d"), "nextCursor": page[-1] if more else None, "cameras": [
        {"cameraId": camera_id, **_live_state(state[camera_id], zone), "zones": state[camera_id]["zones"],
         "lines": _live_lines(state[camera_id]["lines"])} for camera_id in page]}
