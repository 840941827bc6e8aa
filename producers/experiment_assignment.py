"""Stamps each frame with its A/B experiment and variant, following the active experiment in Redis live.

Ingestors never restart for an experiment: the active one is re-read every ``refresh_s`` seconds. When none is
active, frames carry no experiment and get the production model. When Redis cannot be reached, or the stored
experiment cannot be read (corrupt JSON, a dangling active pointer), frames keep the assignment they had. Lookups go
through a circuit breaker: once Redis is known to be away they are skipped. With ``background=True`` (what ``camcount
ingest`` uses) only the first lookup runs on the publish path; every refresh after it runs on a thread of its own,
so a Redis that stops answering never holds up a frame (a live camera would drop its frames meanwhile) while the
breaker is still counting failures, nor at each of its half-open probes.
"""

from __future__ import annotations

import logging
import threading
import time

import pybreaker
import redis

from experiments.assignment import assign
from experiments.config import Experiment
from sinks.experiment_store import ExperimentStore, ExperimentStoreError, ExperimentStoreUnavailable

log = logging.getLogger(__name__)


class ExperimentAssigner:
    def __init__(self, store: ExperimentStore, refresh_s: float = 5.0,
                 breaker: pybreaker.CircuitBreaker | None = None, background: bool = False) -> None:
        self._store = store
        self._background = background
        self._looked_up = False
        self._lookup: threading.Thread | None = None
        self._breaker = breaker or pybreaker.CircuitBreaker(name="redis-experiments")
        self._refresh_s = refresh_s
        self._active: Experiment | None = None
        self._checked = -refresh_s
        self._redis_down = False
        self._unreadable = False

    def __call__(self, camera_id: str, capture_ts_ms: int) -> tuple[str, str]:
        """(experiment name, variant name) for this camera's frame; ("", "") means production."""
        self._refresh()
        active = self._active  # one read: a background lookup may replace it meanwhile
        if active is None:
            return "", ""
        return active.name, assign(active, camera_id, capture_ts_ms).name

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < self._refresh_s:
            return
        self._checked = now
        if not (self._background and self._looked_up):
            self._looked_up = True
            self._look_up()  # the first frame waits for the first lookup, so it is stamped right from the start
        elif self._lookup is None or not self._lookup.is_alive():  # one lookup at a time
            self._lookup = threading.Thread(target=self._look_up, name="experiment-lookup", daemon=True)
            self._lookup.start()

    def _look_up(self) -> None:
        try:
            active = self._breaker.call(self._store.active)
        except pybreaker.CircuitBreakerError:
            return  # Redis is known to be away: keep the assignment until the breaker's probe
        except (ExperimentStoreUnavailable, redis.RedisError) as exc:  # unreachable, or another Redis failure
            if not self._redis_down:
                log.warning("cannot read the active experiment from Redis (%s); frames keep their assignment (%s)",
                            exc, self._active.name if self._active else "production")
            self._redis_down = True
            return
        except (ValueError, ExperimentStoreError) as exc:  # pydantic's ValidationError is a ValueError
            if not self._unreadable:
                log.warning("the active experiment stored in Redis is unreadable (%s); frames keep their "
                            "assignment (%s)",
                            " ".join(str(exc).split()), self._active.name if self._active else "production")
            self._redis_down, self._unreadable = False, True
            return
        self._redis_down = self._unreadable = False
        if (active and active.name) != (self._active and self._active.name):
            log.info("active experiment: %s", active.name if active else "none (production model)")
        self._active = active
