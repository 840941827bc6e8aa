"""Model fallback: the detector that serves a reference when its current version will not load or keeps failing.

``production -> previous -> a small CPU model``: settings name the chain (``model.fallbacks``), this module walks it.
Pure of Kafka: the inference worker asks ``FallbackChain.detect`` to run each production batch and ``refresh`` between
batches; every result says which detector produced it and whether a fallback served it.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np
import pybreaker

from models.detections import Detections
from models.detector import Detector
from models.errors import InferenceFailed, LoadTimeout, ModelError, ModelLoadError
from models.registry import ModelReference, ModelRegistry, RegisteredModel
from models.watcher import ModelWatcher

log = logging.getLogger(__name__)


def expand_fallbacks(reference: str, fallbacks: Sequence[str]) -> list[ModelReference]:
    """The chain's references: ``@ALIAS`` (or ``@VERSION``) means the primary reference's model name."""
    name = ModelReference.parse(reference).name
    return [ModelReference.parse(f"{name}{entry}" if entry.startswith("@") else entry) for entry in fallbacks]


def load_within(load: Callable[[RegisteredModel], Detector], model: RegisteredModel, timeout_s: float) -> Detector:
    """``load(model)``, or LoadTimeout after ``timeout_s``. A load past its timeout keeps running on its daemon
    thread (ONNX Runtime cannot be interrupted) and its result is dropped."""
    future: Future[Detector] = Future()

    def run() -> None:
        try:
            future.set_result(load(model))
        except BaseException as exc:  # handed to the caller
            future.set_exception(exc)

    threading.Thread(target=run, name=f"model-load-{model.manifest.name}@{model.manifest.version}",
                     daemon=True).start()
    try:
        return future.result(timeout_s)
    except TimeoutError:
        raise LoadTimeout(f"{model.manifest.name}@{model.manifest.version} did not load within {timeout_s:.0f} s "
                          "(model.load_timeout_s)") from None


@dataclass(frozen=True)
class Served:
    """One batch's detections, the detector that produced them, and whether it was a fallback."""

    detections: list[Detections]
    detector: Detector
    fallback: bool


class FallbackChain:
    """Serves the primary reference (e.g. ``yolov4-tiny@production``), with fallbacks behind it.

    Invariants:
    1. The primary serves while it is loaded, is the version its reference names, and its inference breaker is not
       open. When its reference moves to a version that cannot load, the version already serving keeps serving
       (it was production until then), but as a fallback: ``fallback_active`` is True until the reference names a
       version that loads (a rollback, a fix), which the watcher retries with backoff.
    2. Otherwise the first model of ``fallbacks`` that loads within ``load_timeout_s`` serves; a fallback that
       fails too hands the batch to the next one; when none can serve, the primary's error is raised.
    3. ``breaker_failures`` consecutive failed primary batches open the primary's breaker for ``breaker_reset_s``;
       a failed batch is re-run on a fallback at once, so no frame is lost to it; after the reset the next batch
       is the half-open probe: it goes to the primary and closes the breaker when it succeeds.
    4. Every ``Served`` names the detector that produced it and whether that was a fallback.
    Called from one thread (the worker's), except ``status`` and ``fallback_active``, which any thread may read.
    """

    def __init__(self, registry: ModelRegistry, reference: str, fallbacks: Sequence[str],
                 load: Callable[[RegisteredModel], Detector], load_timeout_s: float,
                 breaker: pybreaker.CircuitBreaker,
                 watch: Callable[[str | None], ModelWatcher] | None = None) -> None:
        """``watch(serving_version)``, when given, makes the watcher that follows the reference after ``start``
        (hot swap, and retries of a version that failed)."""
        self._registry = registry
        self.reference = str(ModelReference.parse(reference))
        self._fallback_refs = expand_fallbacks(reference, fallbacks)
        self._load = load
        self._load_timeout_s = load_timeout_s
        self._breaker = breaker
        self._primary: Detector | None = None
        self._primary_error: ModelError | None = None
        self._fallbacks: dict[ModelReference, Detector] = {}
        self._failed_fallbacks: set[ModelReference] = set()
        self._watch = watch
        self._watcher: ModelWatcher | None = None
        self._load_failures: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def start(self) -> Detector:
        """Load the primary, or else the first fallback that loads; the detector that serves first.

        Raises the primary's error when neither it nor any fallback loads (nothing could serve).
        """
        try:
            self._primary = load_within(self._load, self._registry.resolve(self.reference), self._load_timeout_s)
        except ModelError as exc:
            self._primary_error = exc
            self._load_failures[(exc.code, exc.detail)] += 1
            log.error("%s cannot serve (%s); trying the fallback chain %s", self.reference, exc,
                      ", ".join(map(str, self._fallback_refs)) or "(empty)")
        if self._watch is not None:
            self._watcher = self._watch(self._primary.version if self._primary is not None else None)
        if self._primary is not None:
            return self._primary
        detector = self._first_fallback()
        if detector is None:
            assert self._primary_error is not None
            raise self._primary_error
        return detector

    @property
    def serving(self) -> Detector:
        """The detector the next batch goes to, unless that batch fails."""
        if self._primary_in_service():
            assert self._primary is not None
            return self._primary
        return self._first_fallback() or self._last_resort() or self._require_primary()

    @property
    def fallback_active(self) -> bool:
        """Whether a fallback serves the reference's frames now (the metric and alert read this)."""
        return not self._primary_in_service()

    @property
    def loading(self) -> bool:
        """Whether the watcher is loading a version in the background (``refresh`` hands it over once ready)."""
        return self._watcher is not None and self._watcher.loading

    def load_failures(self) -> Counter[tuple[str, str]]:
        """Every failed load of this chain's models since start (start-up, fallbacks, hot swaps), by (code, detail)."""
        with self._lock:
            total = Counter(self._load_failures)
        if self._watcher is not None:
            total.update(self._watcher.load_failures)
        return total

    def watcher_status(self) -> dict[str, Any] | None:
        return self._watcher.status() if self._watcher is not None else None

    def load_reference(self, reference: str) -> Detector:
        """Any other reference (an experiment's variant), loaded like the chain's models, within the timeout."""
        return load_within(self._load, self._registry.resolve(reference), self._load_timeout_s)

    def detectors(self) -> list[Detector]:
        with self._lock:
            loaded = [d for d in (self._primary, *self._fallbacks.values()) if d is not None]
        return list({id(d): d for d in loaded}.values())

    def refresh(self) -> None:
        """Between batches: take a version the watcher loaded (the reference moved, or a failed one recovered)."""
        if self._watcher is None:
            return
        swap = self._watcher.poll()
        if swap is None:
            return
        with self._lock:
            self._primary = swap.detector
            self._primary_error = None
            self._fallbacks.clear()  # device memory; and failed fallbacks may load now
            self._failed_fallbacks.clear()
        self._breaker.close()

    def detect(self, images: Sequence[np.ndarray], conf: float | None = None,
               iou: float | None = None) -> Served:
        """One batch through the chain (invariants 2-4)."""
        primary = self._primary
        if primary is not None and not self._target_failed():  # an open breaker refuses at once, or lets a probe by
            try:
                return Served(self._breaker.call(primary.detect, images, conf=conf, iou=iou), primary, False)
            except (InferenceFailed, pybreaker.CircuitBreakerError) as exc:
                log.warning("%s@%s failed a batch of %d (%s); serving it from the fallback chain", primary.name,
                            primary.version, len(images), exc)
        for reference in self._fallback_refs:
            detector = self._fallback(reference)
            if detector is None:
                continue
            try:
                return Served(detector.detect(images, conf=conf, iou=iou), detector, True)
            except InferenceFailed as exc:
                log.error("fallback %s@%s failed a batch too: %s", detector.name, detector.version, exc)
        last_resort = self._last_resort()
        if last_resort is not None:
            return Served(last_resort.detect(images, conf=conf, iou=iou), last_resort, True)
        if primary is None:
            self._require_primary()
        raise InferenceFailed(f"{self.reference} and every fallback ({', '.join(map(str, self._fallback_refs))}) "
                              "failed on this batch")

    def status(self) -> dict[str, Any]:
        primary = self._primary
        with self._lock:
            loaded = [f"{d.name}@{d.version}" for d in self._fallbacks.values()]
        active = self.fallback_active
        serving = self._primary if not active else (self._fallbacks_in_order() or [self._last_resort()])[0]
        watcher = self.watcher_status()
        return {"reference": self.reference, "fallback_active": active,
                "target": watcher["target"] if watcher is not None else None,
                "serving": None if serving is None else f"{serving.name}@{serving.version}",
                "primary": None if primary is None else f"{primary.name}@{primary.version}",
                "primary_error": None if self._primary_error is None else str(self._primary_error),
                "breaker": self._breaker.current_state,
                "fallbacks": [str(reference) for reference in self._fallback_refs], "loaded_fallbacks": loaded}

    def _fallbacks_in_order(self) -> list[Detector]:
        """Loaded fallbacks in chain order (what ``detect`` tries first), without loading any."""
        with self._lock:
            return [self._fallbacks[r] for r in self._fallback_refs if r in self._fallbacks]

    def _breaker_open(self) -> bool:
        return self._breaker.current_state == pybreaker.STATE_OPEN

    def _target_failed(self) -> bool:
        """The reference names a version the watcher could not load (or cannot be resolved at all)."""
        return self._watcher is not None and self._watcher.status()["error"] is not None

    def _primary_in_service(self) -> bool:
        return self._primary is not None and not self._breaker_open() and not self._target_failed()

    def _last_resort(self) -> Detector | None:
        """The version that served before the reference moved to one that cannot load: it is still production's
        last working version (invariant 1), unless its own breaker is open."""
        if self._primary is not None and not self._breaker_open():
            return self._primary
        return None

    def _require_primary(self) -> Detector:
        raise self._primary_error or ModelLoadError(f"{self.reference}: no model of the chain can serve")

    def _first_fallback(self) -> Detector | None:
        for reference in self._fallback_refs:
            detector = self._fallback(reference)
            if detector is not None:
                return detector
        return None

    def _fallback(self, reference: ModelReference) -> Detector | None:
        """The detector for fallback ``reference``, loaded on first use; None when it cannot serve. One that failed
        to load is not tried again until the primary swaps (a chain is a short list of known-good models)."""
        if reference in self._fallbacks:
            return self._fallbacks[reference]
        if reference in self._failed_fallbacks:
            return None
        try:
            model = self._registry.resolve(reference)
        except ModelError as exc:
            log.error("fallback %s cannot serve: %s", reference, exc)
            self._failed_fallbacks.add(reference)
            return None
        primary = self._primary
        if primary is not None and (model.manifest.name, model.manifest.version) == (primary.name, primary.version):
            return self._last_resort()  # e.g. @previous after a failed promotion: the version already serving
        try:
            detector = load_within(self._load, model, self._load_timeout_s)
        except ModelError as exc:
            self._load_failures[(exc.code, exc.detail)] += 1
            log.error("fallback %s cannot serve: %s", reference, exc)
            self._failed_fallbacks.add(reference)
            return None
        log.warning("%s falls back to %s (%s@%s)", self.reference, reference, detector.name, detector.version)
        with self._lock:
            self._fallbacks[reference] = detector
        return detector
