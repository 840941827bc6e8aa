"""Hot swap: notice that a registry alias moved, load and warm the new version, hand it over between batches.

Pure of Kafka: the inference worker calls ``poll()`` between batches (every few seconds) and, when it returns a
SwapResult, replaces its detector with ``result.detector`` before the next batch. With ``background=True`` the
load runs on its own thread, so a long one (a TensorRT engine build, a GPU warm-up of every batch size) never
stalls the consumer loop past Kafka's ``max.poll.interval.ms``; the swap is handed over by a later ``poll``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from models.detector import Detector
from models.errors import LoadTimeout, ModelError, ModelLoadError
from models.registry import ModelReference, ModelRegistry, RegisteredModel

logger = logging.getLogger(__name__)

DEFAULT_RETRY_AFTER_S = 60.0
DEFAULT_MAX_RETRY_AFTER_S = 900.0


@dataclass(frozen=True)
class SwapResult:
    """A loaded, warmed detector for ``version``, replacing ``previous_version`` (None on the first load)."""

    detector: Detector
    version: str
    previous_version: str | None
    load_ms: float


@dataclass(frozen=True)
class WatchFailure:
    """Why the alias's current target is not served: error ``code`` (MODEL_00x) and message, and when to retry.

    ``version`` is None when the reference itself could not be resolved.
    """

    version: str | None
    code: str
    message: str
    attempts: int
    retry_at: float


class ModelWatcher:
    """Follows ``reference`` (``NAME@ALIAS``) and loads the version it points at whenever that changes.

    Invariants: the served version only changes through a successful ``load``; a failed version is not loaded
    again until the alias points elsewhere and back, or its backoff expires (``retry_after_s``, doubling per
    consecutive failure up to ``max_retry_after_s``); at most one failure is recorded, the current target's.
    ``poll`` is meant for one caller; ``status`` may be read from any thread. In background mode at most one load
    runs at a time; a swap is only returned once its load finished, for the version the alias named when it began.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        reference: str,
        load: Callable[[RegisteredModel], Detector],
        serving: str | None = None,
        retry_after_s: float = DEFAULT_RETRY_AFTER_S,
        max_retry_after_s: float = DEFAULT_MAX_RETRY_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
        background: bool = False,
        load_timeout_s: float | None = None,
    ) -> None:
        """``serving`` is the version already running (None: the first ``poll`` loads the alias's target). In
        background mode a load still running after ``load_timeout_s`` fails as LoadTimeout (its thread is left to
        finish, its result dropped)."""
        self._registry = registry
        self._reference = ModelReference.parse(reference)
        self._load = load
        self._retry_after_s = retry_after_s
        self._max_retry_after_s = max_retry_after_s
        self._clock = clock
        self._lock = threading.Lock()
        self._serving = serving
        self._target: str | None = serving
        self._failure: WatchFailure | None = None
        self._swaps = 0
        self._background = background
        self._load_timeout_s = load_timeout_s
        self.load_failures: Counter[tuple[str, str]] = Counter()
        """Failed loads by (code, detail), for the load-failure metric."""
        self._loading: tuple[str, Future[Detector], float] | None = None

    @property
    def serving(self) -> str | None:
        return self._serving

    @property
    def loading(self) -> bool:
        """Whether a background load is under way (its result is handed over by a later ``poll``)."""
        return self._loading is not None

    def poll(self) -> SwapResult | None:
        """A new detector when the reference now resolves to another, loadable version; None otherwise.

        In background mode the poll that notices a new version starts its load and returns None; the first poll
        after the load finished returns its result.
        """
        if self._loading is not None:
            return self._collect_background_load()
        try:
            model = self._registry.resolve(self._reference)
        except ModelError as exc:
            self._fail(None, exc.code, exc.message)
            return None
        version = model.manifest.version
        with self._lock:
            self._target = version
            if version == self._serving:
                self._failure = None
                return None
            failure = self._failure
            if failure is not None and failure.version == version and self._clock() < failure.retry_at:
                return None
        start = time.perf_counter()
        if self._background:
            future: Future[Detector] = Future()
            threading.Thread(target=self._load_into, args=(model, future), name=f"model-load-{version}",
                             daemon=True).start()
            self._loading = (version, future, start)
            logger.info("%s now resolves to %s: loading it in the background", self._reference, version)
            return None
        try:
            detector = self._load(model)
        except Exception as exc:  # any load failure must leave the served model untouched
            self._fail_load(version, exc)
            return None
        return self._swapped(detector, version, start)

    def _load_into(self, model: RegisteredModel, future: Future[Detector]) -> None:
        try:
            future.set_result(self._load(model))
        except Exception as exc:  # handed to the polling thread, which records it
            future.set_exception(exc)

    def _collect_background_load(self) -> SwapResult | None:
        assert self._loading is not None
        version, future, start = self._loading
        if not future.done():
            if self._load_timeout_s is not None and time.perf_counter() - start > self._load_timeout_s:
                self._loading = None
                self._fail_load(version, LoadTimeout(f"{self._reference} -> {version} did not load within "
                                                     f"{self._load_timeout_s:.0f} s (model.load_timeout_s)"))
            return None
        self._loading = None
        exc = future.exception()
        if exc is not None:
            self._fail_load(version, exc)
            return None
        return self._swapped(future.result(), version, start)

    def _fail_load(self, version: str, exc: BaseException) -> None:
        error = exc if isinstance(exc, ModelError) else ModelLoadError(str(exc))
        with self._lock:
            self.load_failures[(error.code, error.detail)] += 1
        self._fail(version, error.code, error.message)

    def _swapped(self, detector: Detector, version: str, start: float) -> SwapResult:
        load_ms = (time.perf_counter() - start) * 1e3
        with self._lock:
            previous, self._serving = self._serving, version
            self._failure = None
            self._swaps += 1
        logger.info("%s now resolves to %s: loaded and warmed in %.0f ms, replacing %s",
                    self._reference, version, load_ms, previous or "nothing")
        return SwapResult(detector, version, previous, load_ms)

    def status(self) -> dict[str, Any]:
        """Reference, served and target versions, swap count, and the current failure (None when healthy)."""
        with self._lock:
            failure = self._failure
            return {
                "reference": str(self._reference),
                "serving": self._serving,
                "target": self._target,
                "swaps": self._swaps,
                "loading": self._loading[0] if self._loading is not None else None,
                "error": None if failure is None else {
                    "version": failure.version,
                    "code": failure.code,
                    "message": failure.message,
                    "attempts": failure.attempts,
                    "retry_in_s": max(0.0, failure.retry_at - self._clock()),
                },
            }

    def _fail(self, version: str | None, code: str, message: str) -> None:
        """Record a failure of ``version`` (None: the reference did not resolve) and log it.

        Load failures are logged at every attempt (at most once per backoff); resolve failures, checked at every
        poll, only when their message changes.
        """
        with self._lock:
            previous = self._failure
            attempts = previous.attempts + 1 if previous is not None and previous.version == version else 1
            backoff = min(self._retry_after_s * 2 ** (attempts - 1), self._max_retry_after_s)
            self._failure = WatchFailure(version, code, message, attempts, self._clock() + backoff)
            serving = self._serving
        if version is not None:
            logger.error("%s -> %s not served (%s, attempt %d, next try in %.0f s unless the alias moves), "
                         "keeping %s: %s", self._reference, version, code, attempts, backoff, serving or "nothing",
                         message)
        elif previous is None or previous.message != message:
            logger.error("%s cannot be resolved (%s), keeping %s: %s", self._reference, code, serving or "nothing",
                         message)
