"""Retry and circuit-breaker policies for camcount's dependencies (ClickHouse, Redis, Kafka, the model registry).

Retries come from tenacity (exponential backoff with jitter, capped), breakers from pybreaker: after
``breaker_failures`` consecutive failures a breaker opens and calls fail at once for ``breaker_reset_s``; then one
half-open probe decides whether it closes again. Every state change is one log line and the gauge
``camcount_dependency_breaker_state{dependency}`` (0 closed, 1 half-open, 2 open).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pybreaker
import tenacity
from prometheus_client import CollectorRegistry, Gauge
from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)

BREAKER_STATES = {pybreaker.STATE_CLOSED: 0, pybreaker.STATE_HALF_OPEN: 1, pybreaker.STATE_OPEN: 2}
CircuitOpen = pybreaker.CircuitBreakerError


class ResilienceSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    retry_initial_s: float = Field(0.5, gt=0, description="first retry delay; doubles per attempt, with jitter")
    retry_max_s: float = Field(5.0, gt=0, description="longest delay between two retries")
    breaker_failures: int = Field(5, ge=1, description="consecutive failures that open a dependency's breaker")
    breaker_reset_s: float = Field(60.0, gt=0, description="how long an open breaker fails calls before a probe")


class BreakerMetrics:
    """The state gauge of every breaker of one process, in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.state = Gauge("camcount_dependency_breaker_state", "Circuit breaker: 0 closed, 1 half-open, 2 open",
                           ("dependency",), registry=registry)


class _StateLog(pybreaker.CircuitBreakerListener):
    def __init__(self, gauge: Gauge | None) -> None:
        self._gauge = gauge

    def state_change(self, breaker: pybreaker.CircuitBreaker, old: Any, new: Any) -> None:
        level = logging.WARNING if new.name == pybreaker.STATE_OPEN else logging.INFO
        log.log(level, "%s circuit breaker %s -> %s", breaker.name, old.name if old else "-", new.name)
        if self._gauge is not None:
            self._gauge.labels(breaker.name).set(BREAKER_STATES[new.name])


def circuit_breaker(dependency: str, settings: ResilienceSettings, metrics: BreakerMetrics | None = None,
                    exclude: tuple[type[BaseException], ...] = ()) -> pybreaker.CircuitBreaker:
    """A breaker for ``dependency``; exceptions in ``exclude`` are the caller's errors, not the dependency's."""
    gauge = metrics.state if metrics is not None else None
    if gauge is not None:
        gauge.labels(dependency).set(0)
    return pybreaker.CircuitBreaker(fail_max=settings.breaker_failures, reset_timeout=settings.breaker_reset_s,
                                    exclude=list(exclude), listeners=[_StateLog(gauge)], name=dependency)


def backoff(settings: ResilienceSettings, retry_on: tuple[type[BaseException], ...], stop: threading.Event, *,
            sleep: Callable[[float], None] = time.sleep, what: str = "call") -> tenacity.Retrying:
    """A tenacity ``Retrying`` for ``retry_on``: exponential backoff with jitter up to ``retry_max_s``, until the
    call succeeds or ``stop`` is set. The last error is re-raised."""
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(retry_on),
        wait=tenacity.wait_exponential_jitter(multiplier=settings.retry_initial_s, max=settings.retry_max_s,
                                               jitter=settings.retry_initial_s),
        stop=tenacity.stop_when_event_set(stop),
        sleep=sleep, reraise=True,
        before_sleep=lambda state: log.warning("%s failed (attempt %d: %s); retrying in %.1f s", what,
                                               state.attempt_number, state.outcome.exception(),
                                               state.next_action.sleep if state.next_action else 0.0),
    )
