"""Everything the API's routes share, built once per process and kept on ``app.state.services`` (no globals).

``ApiServices`` is a plain dataclass: the management side of the API adds its own stores as fields (``audit``,
``key_store``) and fills them in :meth:`ApiServices.from_settings`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import redis
from clickhouse_driver import Client
from fastapi import Request

from api.auth import KeyLookup, KeyRing, KeysFile
from api.batching import BatchRun
from api.metrics import ApiMetrics
from api.model_pool import LoadDetector, ModelPool, ServedModel
from api.principals import StoredKeyLookup
from foundation.clickhouse import ClickHouseUnavailable, clickhouse_client, is_unavailable
from foundation.resilience import circuit_breaker
from foundation.settings import Settings
from models.errors import ModelError
from models.loading import load_registered_model, open_model_registry
from models.registry import ModelRegistry, RegisteredModel
from sinks.api_keys import ApiKeyStore, KeyCache
from sinks.audit import AuditLog
from sinks.experiment_store import ExperimentStore
from sinks.request_log import RequestLog
from sinks.result_cache import ResultCache

log = logging.getLogger(__name__)

LIVE_TIMEOUT_S = 2.0
"""Connect and reply timeout of the live-state Redis client: a hung Redis fails a request, never hangs it."""


@dataclass
class ApiServices:
    """The API process's shared state. Invariant: built by :meth:`from_settings` (or a test's own parts), started
    by the app's lifespan before the first request and stopped after the last."""

    settings: Settings
    registry: ModelRegistry
    models: ModelPool
    key_ring: KeyRing
    metrics: ApiMetrics
    cache: ResultCache | None = None
    """Redis result cache; None runs without one (every request a miss)."""
    request_log: RequestLog | None = None
    """ClickHouse request log; None logs nothing."""
    clickhouse: Callable[[], Client] | None = None
    """A new client on camcount's database per call (the caller disconnects it); None: no ClickHouse."""
    audit: AuditLog | None = None
    """The audit trail every management action writes to."""
    key_store: ApiKeyStore | None = None
    """The API key store (management routes); the key ring reads it through ``key_cache``."""
    key_cache: KeyCache | None = None
    """The key table in memory, refreshed every ``api.key_refresh_s``: the key ring's lookup."""
    experiment_store: ExperimentStore | None = None
    """A/B experiment state in Redis (experiment routes)."""
    live_redis: redis.Redis | None = None
    """The Redis of the counting app's live state (``/api/v1/live``, ``/api/v1/cameras``)."""
    preload: list[str] = field(default_factory=list)
    """References loaded at start; readiness waits for them."""
    process_usage: Callable[[], dict[str, Any]] = field(default_factory=lambda: ProcessUsage())
    """Resource use of this process (``ProcessUsage``), for model status."""
    _preloading: asyncio.Task[None] | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings, load: LoadDetector | None = None,
                      key_lookup: KeyLookup | None = None) -> ApiServices:
        """Services on the configured registry, Redis and ClickHouse. ``load`` builds a detector for a registered
        model (default: the configured providers, ``api.max_batch``, ``api.intra_op_threads``)."""
        api = settings.api
        metrics = ApiMetrics()
        registry = open_model_registry(settings)
        load = load or (lambda model: _load_detector(settings, model))

        def on_batch(served: ServedModel, run: BatchRun) -> None:
            labels = (served.name, served.version)
            metrics.batch_size.labels(*labels).observe(run.size)
            metrics.queue.labels(*labels).observe(run.oldest_wait_s)
            metrics.compute.labels(*labels).observe(run.run_s)

        models = ModelPool(registry, load, api.max_batch, api.max_delay_ms, api.max_loaded_models,
                           api.model_resolve_ttl_s, on_batch, max_queued=api.max_queued_images)
        cache = ResultCache.connect(settings.redis_url(), settings.redis.key_prefix, api.cache_ttl_s,
                                    api.cache_max_entries,
                                    circuit_breaker("redis-result-cache", settings.resilience, metrics.breakers),
                                    on_lookup=lambda result: metrics.cache_lookups.labels(result).inc())

        def connect_clickhouse() -> Client:
            return clickhouse_client(settings)

        request_log = RequestLog(connect_clickhouse,
                                 circuit_breaker("clickhouse-request-log", settings.resilience, metrics.breakers),
                                 api.request_log_buffer, api.request_log_flush_s,
                                 on_drop=lambda count, reason: metrics.request_log_dropped.labels(reason).inc(count))
        key_store = ApiKeyStore.for_settings(settings)
        key_cache = KeyCache(key_store, api.key_refresh_s)
        lookups: list[KeyLookup] = [lookup for lookup in (
            key_lookup, KeysFile(Path(api.keys_file)) if api.keys_file else None, StoredKeyLookup(key_cache))
            if lookup is not None]
        key_ring = KeyRing.from_env(lookups, api.auth_failure_limit, api.auth_failure_window_s)
        return cls(settings=settings, registry=registry, models=models, key_ring=key_ring, metrics=metrics,
                   cache=cache, request_log=request_log, clickhouse=connect_clickhouse, key_store=key_store,
                   key_cache=key_cache, audit=AuditLog.for_settings(settings),
                   experiment_store=ExperimentStore.for_settings(settings),
                   live_redis=redis.Redis.from_url(settings.redis_url(), socket_timeout=LIVE_TIMEOUT_S,
                                                   socket_connect_timeout=LIVE_TIMEOUT_S),
                   preload=list(dict.fromkeys([settings.model.reference, *api.preload])))

    async def start(self) -> None:
        """Start the request log and begin loading the preloaded models (in the background: liveness answers
        meanwhile, readiness waits)."""
        if self.request_log is not None:
            self.request_log.start()
        if self.key_cache is not None:
            await asyncio.to_thread(self.key_cache.start)  # first load now; then refreshed on its own thread
        self._preloading = asyncio.get_running_loop().create_task(self._preload())

    async def _preload(self) -> None:
        for reference in self.preload:
            try:
                await self.models.get(self.models.resolve(reference))
            except ModelError as exc:
                log.error("cannot preload %s: %s", reference, exc.one_line())
        self.metrics.models_loaded.set(len(self.models.loaded()))

    def ready(self) -> bool:
        """Whether every preloaded reference is loaded and serving (what readiness probes ask)."""
        if self._preloading is None or not self._preloading.done():
            return False
        for reference in self.preload:
            try:
                model = self.models.resolve(reference)
            except ModelError:
                return False
            served = self.models.find(model.manifest.name, model.manifest.version)
            if served is None or served.state != "ready":
                return False
        return True

    async def stop(self) -> None:
        if self._preloading is not None:
            self._preloading.cancel()
        await self.models.stop()
        if self.cache is not None:
            await self.cache.close()
        if self.request_log is not None:
            await asyncio.to_thread(self.request_log.stop)
        if self.key_cache is not None:
            await asyncio.to_thread(self.key_cache.close)
        if self.live_redis is not None:
            self.live_redis.close()

    async def query_clickhouse(self, sql: str, params: dict[str, Any]) -> list[tuple]:
        """Rows of ``sql`` from camcount's database, run in a thread; ClickHouseUnavailable (SYS_002, 503) when it
        cannot be reached."""
        if self.clickhouse is None:
            raise ClickHouseUnavailable("this API runs without ClickHouse")
        connect = self.clickhouse

        def run() -> list[tuple]:
            client = connect()
            try:
                return client.execute(sql, params)
            except Exception as exc:
                if is_unavailable(exc):
                    raise ClickHouseUnavailable(f"ClickHouse cannot be reached: {exc}",
                                                remedy="start it or fix CLICKHOUSE_URL, then retry") from exc
                raise
            finally:
                client.disconnect()

        return await asyncio.to_thread(run)


class ProcessUsage:
    """Resident memory, CPU use since the previous call (100 = one core) and thread count of this process."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # the first reading only starts the interval

    def __call__(self) -> dict[str, Any]:
        with self._process.oneshot():
            return {"rssBytes": self._process.memory_info().rss, "cpuPercent": self._process.cpu_percent(None),
                    "threads": self._process.num_threads()}


def _load_detector(settings: Settings, model: RegisteredModel):  # -> Detector
    return load_registered_model(settings, model, max_batch=settings.api.max_batch,
                                 intra_op_threads=settings.api.intra_op_threads)


def services_of(request: Request) -> ApiServices:
    """FastAPI dependency: the process's ApiServices."""
    return request.app.state.services
