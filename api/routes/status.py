"""``GET /api/v1/models/{modelId}/status`` (the version ``modelId`` names now, as this process serves it) and
``GET /api/v1/models/{modelId}/metrics`` (its history, per minute or hour, from ClickHouse: the stream workers'
``inference_log`` and the API's own ``api_requests``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from api.auth import Principal, Role, requires
from api.errors import RequestRejected, error_responses
from api.routes.inference import MODEL_ID
from api.services import ApiServices, services_of
from sinks.count_queries import EARLIEST, LATEST

router = APIRouter(tags=["models"])

READERS = (Role.VIEWER, Role.SYSTEM)
MAX_POINTS = 10_000

# name -> (table, ClickHouse expression). Every expression is an aggregate over one step's rows.
REQUEST_METRICS: dict[str, str] = {
    "requests": "count()",
    "client_errors": "countIf(status >= 400 AND status < 500)",
    "server_errors": "countIf(status >= 500)",
    "images": "sum(images)",
    "cache_hit_rate": "if(sum(images) = 0, 0, sum(cache_hits) / sum(images))",
    "latency_avg_ms": "avg(latency_ms)",
    "latency_p50_ms": "quantile(0.5)(latency_ms)",
    "latency_p95_ms": "quantile(0.95)(latency_ms)",
    "latency_p99_ms": "quantile(0.99)(latency_ms)",
}
"""From ``api_requests``: the HTTP requests this model version answered."""
STREAM_METRICS: dict[str, str] = {
    "frames": "count()",
    "frame_errors": "countIf(status = 'error')",
    "infer_ms_avg": "avgIf(infer_ms, status = 'ok')",
    "infer_ms_p95": "quantileIf(0.95)(infer_ms, status = 'ok')",
    "e2e_ms_p95": "quantileIf(0.95)(e2e_ms, status = 'ok')",
    "detections_per_frame": "avgIf(detections, status = 'ok')",
}
"""From ``inference_log``: the camera frames the stream workers inferred with this model version."""
METRIC_NAMES = (*REQUEST_METRICS, *STREAM_METRICS)
_SOURCES = (("api_requests", "request_time", REQUEST_METRICS), ("inference_log", "capture_time", STREAM_METRICS))
_STEPS = {"minute": ("toStartOfMinute", timedelta(minutes=1)), "hour": ("toStartOfHour", timedelta(hours=1))}


class Resources(BaseModel):
    rssBytes: int = Field(description="resident memory of this API process")  # noqa: N815
    cpuPercent: float = Field(description="CPU use of this process since the previous status call (100 = one core)")  # noqa: N815
    threads: int


class ModelStatus(BaseModel):
    modelId: str  # noqa: N815
    model: str
    version: str
    status: Literal["loading", "ready", "error", "unavailable"] = Field(
        description="unavailable: registered, but not loaded in this process (the next inference loads it)")
    error: str | None
    provider: str | None
    avgLatency: float | None = Field(description="mean ms per image over the last minute")  # noqa: N815
    throughput: float = Field(description="images per second over the last minute")
    queued: int = Field(description="images waiting for the model now")
    resources: Resources
    lastUpdated: str | None = Field(description="when this version last answered, ISO-8601 UTC")  # noqa: N815


class MetricPoint(BaseModel):
    time: str
    value: float | None


class ModelMetrics(BaseModel):
    modelId: str  # noqa: N815
    model: str
    version: str
    from_: str = Field(alias="from")
    to: str
    step: str
    metrics: dict[str, list[MetricPoint]]


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@router.get("/api/v1/models/{modelId}/status", response_model=ModelStatus,
            responses=error_responses(401, 403, 404, 429), summary="Serving status of a model version")
async def model_status(modelId: str = MODEL_ID, _: Principal = Depends(requires(*READERS)),  # noqa: N803
                       services: ApiServices = Depends(services_of)) -> dict[str, Any]:
    model = services.models.resolve(modelId)
    served = services.models.find(model.manifest.name, model.manifest.version)
    usage = services.process_usage()
    average, throughput = served.stats.summary() if served is not None else (None, 0.0)
    return {
        "modelId": modelId, "model": model.manifest.name, "version": model.manifest.version,
        "status": served.state if served is not None else "unavailable",
        "error": served.error if served is not None else None,
        "provider": served.detector.provider if served is not None and served.detector is not None else None,
        "avgLatency": None if average is None else round(average, 3), "throughput": round(throughput, 3),
        "queued": served.batcher.queued if served is not None and served.batcher is not None else 0,
        "resources": usage, "lastUpdated": _iso(served.stats.last_updated) if served is not None else None,
    }


def _utc_naive(moment: datetime, name: str) -> datetime:
    """``moment`` in UTC without tzinfo (a naive one is taken as UTC), as clickhouse-driver sends it unchanged;
    RequestRejected, naming parameter ``name``, outside the times ClickHouse stores."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    if not EARLIEST <= aware <= LATEST:  # aware comparisons never overflow, unlike astimezone near year 1
        raise RequestRejected(f"`{name}` {moment.isoformat()} is outside the times ClickHouse stores "
                              f"({EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d})", remedy="send a time in that range")
    return aware.astimezone(UTC).replace(tzinfo=None)


@router.get("/api/v1/models/{modelId}/metrics", response_model=ModelMetrics, response_model_by_alias=True,
            responses=error_responses(401, 403, 404, 422, 429, 503),
            summary="History of a model version's metrics (ClickHouse)")
async def model_metrics(
    modelId: str = MODEL_ID,  # noqa: N803
    start: datetime | None = Query(None, alias="from", description="ISO-8601; default: an hour before `to`"),
    end: datetime | None = Query(None, alias="to", description="ISO-8601; default: now"),
    metrics: str | None = Query(None, description=f"comma-separated names; default all of: "
                                                  f"{', '.join(METRIC_NAMES)}"),
    step: Literal["minute", "hour"] = Query("minute"),
    _: Principal = Depends(requires(*READERS)),
    services: ApiServices = Depends(services_of),
) -> dict[str, Any]:
    model = services.models.resolve(modelId)
    names = [n.strip() for n in metrics.split(",") if n.strip()] if metrics else list(METRIC_NAMES)
    unknown = [n for n in names if n not in METRIC_NAMES]
    if unknown or not names:
        raise RequestRejected(f"unknown metrics {unknown[:10]}" if unknown else "no metric named",
                              remedy=f"choose from {', '.join(METRIC_NAMES)}")
    end_at = _utc_naive(end, "to") if end is not None else datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    start_at = _utc_naive(start, "from") if start is not None else end_at - timedelta(hours=1)
    bucket, width = _STEPS[step]
    if start_at >= end_at:
        raise RequestRejected("`from` must be before `to`", remedy="swap them")
    if (end_at - start_at) / width > MAX_POINTS:
        raise RequestRejected(f"{step} steps over that range exceed {MAX_POINTS} points",
                              remedy="narrow the range or use step=hour")
    params = {"name": model.manifest.name, "version": model.manifest.version, "start": start_at, "end": end_at}
    series: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for table, time_column, catalogue in _SOURCES:
        wanted = [n for n in names if n in catalogue]
        if not wanted:
            continue
        columns = ", ".join(f"{catalogue[n]} AS metric_{n}" for n in wanted)  # an alias must not shadow a column
        sql = (f"SELECT {bucket}({time_column}) AS t, {columns} FROM {table} FINAL "
               f"WHERE model_name = %(name)s AND model_version = %(version)s "
               f"AND {time_column} >= %(start)s AND {time_column} < %(end)s GROUP BY t ORDER BY t")
        for row in await services.query_clickhouse(sql, params):
            for name, value in zip(wanted, row[1:], strict=True):
                number = None if value is None or value != value else float(value)  # NaN: no rows to average
                series[name].append({"time": _iso(row[0]), "value": number})
    return {"modelId": modelId, "model": model.manifest.name, "version": model.manifest.version,
            "from": _iso(start_at), "to": _iso(end_at), "step": step, "metrics": series}
