"""The model versions the API serves: resolved from the registry per request, loaded once, each with its batcher.

A model reference (``NAME``, ``NAME@VERSION``, ``NAME@ALIAS``) is resolved against the registry; an alias's
resolution is reused for ``api.model_resolve_ttl_s``, so a promotion is seen within that time (the next call
after it uses, and caches under, the new version). Versions load on first use, in a thread, once however many
requests ask at the same time (they all await the one load); a version whose load failed answers that failure
(MODEL_002, 503) for ``LOAD_RETRY_S`` before it is tried again. At most ``api.max_loaded_models`` versions stay
loaded: the least recently used idle one is unloaded to make room.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from api.batching import BatchRun, MicroBatcher
from models.detector import Detector
from models.errors import ModelLoadError
from models.registry import ModelReference, ModelRegistry, RegisteredModel

log = logging.getLogger(__name__)

ModelState = Literal["loading", "ready", "error", "unavailable"]
STATS_WINDOW_S = 60.0
LOAD_RETRY_S = 30.0


@dataclass
class ServingStats:
    """Requests answered by one model version in the last ``STATS_WINDOW_S`` seconds: (monotonic time, ms)."""

    samples: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=100_000))
    last_updated: datetime | None = None

    def record(self, latency_ms: float) -> None:
        self.samples.append((time.monotonic(), latency_ms))
        self.last_updated = datetime.now(UTC)

    def summary(self) -> tuple[float | None, float]:
        """(mean latency ms, images per second) over the window."""
        horizon = time.monotonic() - STATS_WINDOW_S
        while self.samples and self.samples[0][0] < horizon:
            self.samples.popleft()
        if not self.samples:
            return None, 0.0
        return sum(ms for _, ms in self.samples) / len(self.samples), len(self.samples) / STATS_WINDOW_S


@dataclass
class ServedModel:
    """One loaded (or loading, or failed) model version. ``batcher`` is set once ``state`` is ``ready``."""

    name: str
    version: str
    state: ModelState = "loading"
    error: str | None = None
    detector: Detector | None = None
    batcher: MicroBatcher | None = None
    loaded: asyncio.Future[None] | None = None
    failed_at: float | None = None
    """When the last load failed (monotonic); a new load is tried only ``LOAD_RETRY_S`` after it."""
    last_used: float = field(default_factory=time.monotonic)
    stats: ServingStats = field(default_factory=ServingStats)

    @property
    def key(self) -> tuple[str, str]:
        return self.name, self.version


LoadDetector = Callable[[RegisteredModel], Detector]


class ModelPool:
    """See the module docstring. All methods run on the API's event loop."""

    def __init__(self, registry: ModelRegistry, load: LoadDetector, max_batch: int, max_delay_ms: float,
                 max_loaded: int, resolve_ttl_s: float,
                 on_batch: Callable[[ServedModel, BatchRun], None] | None = None,
                 max_queued: int | None = None) -> None:
        self.registry = registry
        self._load = load
        self._max_batch = max_batch
        self._max_delay_ms = max_delay_ms
        self._max_loaded = max_loaded
        self._resolve_ttl_s = resolve_ttl_s
        self._on_batch = on_batch
        self._max_queued = max_queued
        self._models: dict[tuple[str, str], ServedModel] = {}
        self._resolved: dict[str, tuple[float, RegisteredModel]] = {}

    def resolve(self, reference: str) -> RegisteredModel:
        """The registered model ``reference`` names now; ModelNotFound (MODEL_001) if none."""
        parsed = ModelReference.parse(reference)
        key = str(parsed)
        if not parsed.is_version and self._resolve_ttl_s > 0:
            cached = self._resolved.get(key)
            if cached is not None and time.monotonic() - cached[0] < self._resolve_ttl_s:
                return cached[1]
        model = self.registry.resolve(parsed)
        if not parsed.is_version and self._resolve_ttl_s > 0:
            self._resolved[key] = (time.monotonic(), model)
        return model

    def forget_resolutions(self, name: str | None = None) -> None:
        """Re-read aliases (of ``name``, or all) at the next request, e.g. right after a promotion."""
        self._resolved = {k: v for k, v in self._resolved.items() if name is not None and not k.startswith(f"{name}@")}

    def find(self, name: str, version: str) -> ServedModel | None:
        return self._models.get((name, version))

    def loaded(self) -> list[ServedModel]:
        return list(self._models.values())

    async def get(self, model: RegisteredModel) -> ServedModel:
        """The ready served version of ``model``, loading it first if needed; raises the load's ModelError."""
        key = (model.manifest.name, model.manifest.version)
        served = self._models.get(key)
        if served is not None and served.state == "error" and served.failed_at is not None \
                and time.monotonic() - served.failed_at < LOAD_RETRY_S:
            ago = time.monotonic() - served.failed_at
            raise ModelLoadError(f"{served.name}@{served.version} failed to load {ago:.0f} s ago and is retried "
                                 f"{LOAD_RETRY_S:g} s after that: {served.error}")
        if served is None or served.state == "error":
            served = self._start_loading(model)
        served.last_used = time.monotonic()
        assert served.loaded is not None
        await asyncio.shield(served.loaded)
        return served

    def _start_loading(self, model: RegisteredModel) -> ServedModel:
        served = ServedModel(model.manifest.name, model.manifest.version)
        served.loaded = asyncio.get_running_loop().create_task(self._load_into(served, model))
        self._models[served.key] = served
        return served

    async def _load_into(self, served: ServedModel, model: RegisteredModel) -> None:
        started = time.perf_counter()
        try:
            detector = await asyncio.to_thread(self._load, model)
        except Exception as exc:
            served.state, served.error, served.failed_at = "error", " ".join(str(exc).split()), time.monotonic()
            log.error("cannot load %s@%s: %s", served.name, served.version, served.error)
            raise
        served.detector = detector
        on_batch = self._on_batch
        served.batcher = MicroBatcher(detector.detect_each, self._max_batch, self._max_delay_ms,
                                      name=f"{served.name}@{served.version}",
                                      on_batch=(lambda run: on_batch(served, run)) if on_batch else None,
                                      max_queued=self._max_queued)
        served.batcher.start()
        served.state = "ready"
        log.info("serving %s@%s on %s (loaded in %.1f s)", served.name, served.version, detector.provider,
                 time.perf_counter() - started)
        await self._unload_surplus(keep=served.key)

    async def _unload_surplus(self, keep: tuple[str, str]) -> None:
        idle = sorted((m for m in self._models.values() if m.key != keep and m.state != "loading"
                       and (m.batcher is None or m.batcher.queued == 0)), key=lambda m: m.last_used)
        while len(self._models) > self._max_loaded and idle:
            victim = idle.pop(0)
            del self._models[victim.key]
            if victim.batcher is not None:
                await victim.batcher.stop()
            log.info("unloaded %s@%s (least recently used; api.max_loaded_models=%d)", victim.name,
                     victim.version, self._max_loaded)

    async def stop(self) -> None:
        for served in list(self._models.values()):
            if served.batcher is not None:
                await served.batcher.stop()
        self._models.clear()
