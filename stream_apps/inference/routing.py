"""Which model, with which thresholds, serves each frame: production, or its A/B experiment's variant.

Frames carry ``experiment`` and ``variant``; frames without an experiment get the production model. An
experiment is looked up by name the first time one of its frames arrives, also after it stopped, so frames
still in flight are served by their own variant's model. The running experiment is also watched (on a background
thread, so an absent store never stalls the worker) and its models are loaded between batches as soon as it starts,
so its first frames do not wait about a second for them. Models are loaded once per resolved version and
shared between variants that differ only in thresholds. When the experiment store fails, or a variant's model
does not load, the frames that cannot be served are refused with a BadFrame (dead-lettered with the reason, to
be replayed once fixed) and the rest keep being served: no frame can take the worker down.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import redis

from experiments.assignment import should_shadow
from experiments.config import Experiment
from foundation.resilience import BreakerMetrics
from foundation.settings import Settings
from models.detector import Detector
from models.errors import ModelError
from models.fallback import FallbackChain, Served
from models.loading import load_model_chain
from sinks.experiment_store import ExperimentNotFound, ExperimentStore, ExperimentStoreUnavailable
from stream_apps.inference.frames import BadFrame, FrameProblem

log = logging.getLogger(__name__)

UNKNOWN_EXPERIMENT_RETRY_S = 5.0
UNAVAILABLE_RETRY_S = 30.0
"""Pause before an experiment whose lookup or variant model failed is tried again (a load can take seconds)."""
IDLE_EXPERIMENT_RELEASE_S = 600.0
"""An experiment none of whose frames arrived for this long is forgotten and its variants' models released (device
memory); a later frame of it looks it up again."""


@dataclass(frozen=True)
class Route:
    """A model and its thresholds; the production route runs through ``chain`` (fallbacks behind the model)."""

    detector: Detector
    confidence_threshold: float | None = None
    nms_threshold: float | None = None
    chain: FallbackChain | None = None

    @property
    def key(self) -> tuple[int, float | None, float | None]:
        """Frames with equal keys run as one batch."""
        return id(self.detector), self.confidence_threshold, self.nms_threshold

    def serve(self, images: Sequence[np.ndarray]) -> Served:
        if self.chain is not None:
            return self.chain.detect(images, conf=self.confidence_threshold, iou=self.nms_threshold)
        return Served(self.detector.detect(images, conf=self.confidence_threshold, iou=self.nms_threshold),
                      self.detector, False)


class RouteTable:
    """Routes of one worker. Invariant: routes change only in ``refresh`` and ``route``, both called between
    batches by the worker's own thread, so a batch is served by one model version from start to end."""

    def __init__(
        self,
        production: Detector | FallbackChain,
        load_model: Callable[[str], Detector] | None = None,
        find_experiment: Callable[[str], Experiment] | None = None,
        poll_interval_s: float = 5.0,
        production_thresholds: tuple[float | None, float | None] = (None, None),
        unavailable_retry_s: float = UNAVAILABLE_RETRY_S,
        idle_release_s: float = IDLE_EXPERIMENT_RELEASE_S,
        clock: Callable[[], float] = time.monotonic,
        find_active: Callable[[], Experiment | None] | None = None,
    ) -> None:
        """``production`` is a fixed detector, or a FallbackChain (hot swap and fallbacks, refreshed every
        ``poll_interval_s``); ``production_thresholds`` (confidence, NMS) override the production model's manifest
        when set;
        ``find_active``, when given, is asked every ``poll_interval_s`` for the running experiment, to preload it;
        an experiment that could not be read, or one of whose models did not load, is retried after
        ``unavailable_retry_s``; one without frames for ``idle_release_s`` is released."""
        self._clock = clock
        self._thresholds = production_thresholds
        self._chain = production if isinstance(production, FallbackChain) else None
        self._fixed_production = None if isinstance(production, FallbackChain) else production
        self._load_model = load_model
        self._find_experiment = find_experiment
        self._poll_interval_s = poll_interval_s
        self._polled = self._clock()
        self._routes: dict[tuple[str, str], Route] = {}
        self._experiments: dict[str, Experiment] = {}
        self._models: dict[str, Detector] = {}
        self._unknown: dict[str, float] = {}
        self._unavailable: dict[str, tuple[float, FrameProblem, str]] = {}  # when, why, what to say
        """Experiment -> (when, why) for the last attempt that left some of its variants without a route."""
        self._unavailable_retry_s = unavailable_retry_s
        self._idle_release_s = idle_release_s
        self._last_frame: dict[str, float] = {}
        """Experiment -> when its last frame was routed, for releasing idle ones."""
        self._active = _ActiveExperiment(find_active, poll_interval_s) if find_active is not None else None

    @property
    def production(self) -> Detector:
        """The detector that serves frames without an experiment now (a fallback while one is active)."""
        return self._chain.serving if self._chain is not None else self._fixed_production

    @property
    def fallback(self) -> FallbackChain | None:
        return self._chain

    def _production_route(self) -> Route:
        return Route(self.production, *self._thresholds, chain=self._chain)

    def refresh(self) -> None:
        """Hot swap: when the production alias moved to a version that loads and warms up, serve it from now on.

        A version that fails keeps the fallback chain serving (the watcher logs and reports the error code). While
        the watcher loads a version in the background, every call checks whether it is ready, so it is served from
        the next batch on. Experiments idle for ``idle_release_s`` are released here too.
        """
        self._release_idle_experiments()
        self._preload_active_experiment()
        if self._chain is None:
            return
        if not self._chain.loading and self._clock() - self._polled < self._poll_interval_s:
            return
        self._polled = self._clock()
        self._chain.refresh()

    def status(self) -> dict:
        """What the worker's ``/models`` endpoint shows: the production model, every loaded model (production,
        fallbacks and experiment variants), the fallback chain and the hot-swap watcher's state (the failure that
        keeps a version out, if any)."""
        return {"production": self.production.status(),
                "loaded": [detector.status() for detector in self.detectors()],
                "fallback": self._chain.status() if self._chain is not None else None,
                "watcher": self._chain.watcher_status() if self._chain is not None else None}

    def route(self, experiment: str, variant: str) -> Route:
        if not experiment:
            if variant:
                raise BadFrame(FrameProblem.UNKNOWN_VARIANT,
                               f"variant {variant!r} without an experiment: set both headers or neither")
            return self._production_route()
        route = self._routes.get((experiment, variant))
        if route is None:
            self._add_experiment(experiment)
        if experiment in self._experiments or experiment in self._unavailable:
            self._last_frame[experiment] = self._clock()
            route = self._routes.get((experiment, variant))
        if route is None and experiment in self._unavailable:
            definition = self._experiments.get(experiment)
            if definition is None or variant in {v.name for v in definition.variants}:
                raise BadFrame(*self._unavailable[experiment][1:])
        if route is None:
            raise BadFrame(FrameProblem.UNKNOWN_VARIANT,
                           f"experiment {experiment!r} has no variant {variant!r} here: check the ingestor's "
                           f"experiment, or start the experiment with `camcount ab start`")
        return route

    def shadow_route(self, experiment: str, variant: str, camera_id: str, frame_seq: int) -> tuple[str, Route] | None:
        """(candidate variant, route) when this control frame is sampled for a shadow run, else None.

        Call after ``route`` succeeded for the frame, so the experiment is known.
        """
        definition = self._experiments.get(experiment)
        if definition is None or variant != definition.control or not should_shadow(definition, camera_id, frame_seq):
            return None
        candidate = definition.shadow.candidate
        assert candidate is not None  # validated with shadow.enabled
        route = self._routes.get((experiment, candidate))
        return None if route is None else (candidate, route)  # None while the candidate's model is unavailable

    def _preload_active_experiment(self) -> None:
        name = self._active.name if self._active is not None else None
        if name and name not in self._experiments and name not in self._unavailable:
            self._add_experiment(name)
            if name in self._experiments:
                self._last_frame.setdefault(name, self._clock())  # released like any other once idle

    def _release_idle_experiments(self) -> None:
        """Forget experiments without frames for ``idle_release_s``, with the models no other route uses, and the
        names that were unknown longer ago than their retry period, so a long-running worker's memory does not
        grow with every experiment (or mistyped experiment header) it has seen."""
        now = self._clock()
        self._unknown = {name: at for name, at in self._unknown.items() if now - at < UNKNOWN_EXPERIMENT_RETRY_S}
        idle = [name for name, at in self._last_frame.items() if now - at >= self._idle_release_s]
        if not idle:
            return
        for name in idle:
            del self._last_frame[name]
            self._experiments.pop(name, None)
            self._unavailable.pop(name, None)
            for key in [key for key in self._routes if key[0] == name]:
                del self._routes[key]
        in_use = {id(detector) for detector in self._production_detectors()}
        in_use |= {id(route.detector) for route in self._routes.values()}
        released = [reference for reference, detector in self._models.items() if id(detector) not in in_use]
        for reference in released:
            del self._models[reference]
        log.info("released experiment(s) %s after %.0f s without frames; unloaded %s", ", ".join(idle),
                 self._idle_release_s, ", ".join(released) or "no model (still in use)")

    def _loaded_copy_of(self, detector: Detector) -> Detector:
        """The detector already serving the same model version, production or a variant reached through another
        reference (an alias), else ``detector``: one copy of a version in device memory."""
        for loaded in self.detectors():
            if (loaded.name, loaded.version) == (detector.name, detector.version):
                return loaded
        return detector

    def _production_detectors(self) -> list[Detector]:
        return self._chain.detectors() if self._chain is not None else [self._fixed_production]

    def detectors(self) -> list[Detector]:
        loaded = [*self._production_detectors(), *(route.detector for route in self._routes.values())]
        return list({id(detector): detector for detector in loaded}.values())

    def _add_experiment(self, name: str) -> None:
        """Look experiment ``name`` up and add a route for each of its variants whose model loads.

        An unknown name is looked up again after UNKNOWN_EXPERIMENT_RETRY_S. A failing lookup (the store is down)
        or model load (ModelError) is logged once per attempt and remembered in ``_unavailable`` for
        ``unavailable_retry_s``: meanwhile the variants left without a route are refused, the others served.
        """
        if self._find_experiment is None or self._load_model is None:
            return
        now = self._clock()
        if now - self._unknown.get(name, -UNKNOWN_EXPERIMENT_RETRY_S) < UNKNOWN_EXPERIMENT_RETRY_S:
            return
        if name in self._unavailable and now - self._unavailable[name][0] < self._unavailable_retry_s:
            return
        self._unavailable.pop(name, None)
        try:
            experiment = self._find_experiment(name)
        except ExperimentNotFound:
            self._unknown[name] = now
            return
        except (ExperimentStoreUnavailable, redis.RedisError, ValueError) as exc:  # store down, or unparsable
            problem = FrameProblem.EXPERIMENT_UNREADABLE
            self._unavailable[name] = (self._clock(), problem, f"experiment {name!r} cannot be read: {exc!r}")
            log.error("experiment %s cannot be read (%r); its frames are dead-lettered as %s %s for %.0f s", name,
                      exc, problem.code, problem.value, self._unavailable_retry_s)
            return
        self._experiments[name] = experiment
        failures: list[str] = []
        for variant in experiment.variants:
            if (name, variant.name) in self._routes:  # served since an earlier attempt
                continue
            detector = self._models.get(variant.model)
            if detector is None:
                try:
                    detector = self._models[variant.model] = self._loaded_copy_of(self._load_model(variant.model))
                except ModelError as exc:  # str(exc) starts with its code, e.g. [MODEL_002]
                    failures.append(f"variant model unavailable: {variant.model} of variant {variant.name!r} "
                                    f"of experiment {name!r}: {exc}")
                    continue
            self._routes[(name, variant.name)] = Route(detector, variant.confidence_threshold,
                                                       variant.nms_threshold)
            log.info("experiment %s: variant %s served by %s@%s (conf %s, nms %s)", name, variant.name,
                     detector.name, detector.version, variant.confidence_threshold, variant.nms_threshold)
        if failures:
            problem = FrameProblem.VARIANT_MODEL_UNAVAILABLE
            self._unavailable[name] = (self._clock(), problem, "; ".join(failures))
            log.error("%s; the frames of %s are dead-lettered as %s %s for %.0f s before a retry", "; ".join(failures),
                      "that variant" if len(failures) == 1 else "those variants", problem.code, problem.value,
                      self._unavailable_retry_s)


class _ActiveExperiment:
    """The name of the running experiment, re-read every ``interval_s`` on a daemon thread."""

    def __init__(self, find_active: Callable[[], Experiment | None], interval_s: float) -> None:
        self.name: str | None = None
        self._find_active = find_active
        self._interval_s = interval_s
        threading.Thread(target=self._watch, name="active-experiment", daemon=True).start()

    def _watch(self) -> None:
        while True:
            try:
                active = self._find_active()
                self.name = active.name if active is not None and active.status == "running" else None
            except (ExperimentStoreUnavailable, redis.RedisError, ValueError) as exc:  # frames will report it
                log.debug("running experiment not read: %s", exc)
            time.sleep(self._interval_s)


def load_routes(settings: Settings, breakers: BreakerMetrics | None = None) -> RouteTable:
    chain = load_model_chain(settings, settings.inference.max_batch, breakers)
    production = chain.start()
    log.info("serving %s@%s on %s for frames without an experiment%s", production.name, production.version,
             production.provider, " (a FALLBACK: the production reference cannot serve)" if chain.fallback_active
             else "")
    store = ExperimentStore.for_settings(settings)
    return RouteTable(chain, chain.load_reference, store.get, settings.inference.model_poll_s,
                      (settings.model.confidence_threshold, settings.model.nms_threshold), find_active=store.active)
