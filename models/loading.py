"""Settings -> model registry and detectors, the one way every camcount command and worker loads a model."""

from __future__ import annotations

from functools import partial

from foundation.resilience import BreakerMetrics, circuit_breaker
from foundation.settings import Settings
from models.detector import Detector
from models.errors import GpuUnavailable
from models.fallback import FallbackChain
from models.registry import ModelRegistry, RegisteredModel, open_registry
from models.runtime import GPU_DEVICES
from models.watcher import ModelWatcher


def open_model_registry(settings: Settings) -> ModelRegistry:
    """The registry named by ``settings.model.registry`` (local directory or s3://), caching fetched files."""
    return open_registry(settings.model_registry(), settings.layout().registry_cache)


def load_registered_model(settings: Settings, model: RegisteredModel, max_batch: int,
                          intra_op_threads: int | None = None) -> Detector:
    """A warmed-up detector for ``model`` on the configured providers, reusing the on-disk runtime cache.

    With ``model.require_gpu``, a model that would run on CPU (no usable GPU provider) is refused with RES_002.
    """
    detector = Detector.from_model(model, providers=settings.model.providers, max_batch=max_batch,
                                   cache_dir=settings.layout().runtime_cache, intra_op_threads=intra_op_threads)
    if settings.model.require_gpu and detector.provider not in GPU_DEVICES:
        raise GpuUnavailable(f"{detector.name}@{detector.version} would run on {detector.provider}, and "
                             "model.require_gpu is set: check the node's GPU, driver and CUDA libraries (the worker "
                             "log names why each GPU provider was skipped), or unset model.require_gpu to allow CPU")
    return detector


def load_detector(settings: Settings, reference: str | None = None, max_batch: int = 8,
                  intra_op_threads: int | None = None) -> Detector:
    """A warmed-up detector for ``reference`` (default: the configured production reference)."""
    registry = open_model_registry(settings)
    return load_registered_model(settings, registry.resolve(reference or settings.model.reference), max_batch,
                                 intra_op_threads)


def load_model_chain(settings: Settings, max_batch: int, breakers: BreakerMetrics | None = None) -> FallbackChain:
    """The production reference with its fallback chain (``model.fallbacks``), hot swap and inference breaker;
    call ``start()`` on it to load the first model that serves."""
    registry = open_model_registry(settings)
    load = partial(load_registered_model, settings, max_batch=max_batch)
    breaker = circuit_breaker(f"model:{settings.model.reference}", settings.resilience, breakers)

    def watch(serving: str | None) -> ModelWatcher:
        return ModelWatcher(registry, settings.model.reference, load, serving=serving, background=True,
                            retry_after_s=settings.model.load_retry_s, load_timeout_s=settings.model.load_timeout_s)

    return FallbackChain(registry, settings.model.reference, settings.model.fallbacks, load,
                         settings.model.load_timeout_s, breaker, watch)
