"""Adapters: experiment state in Redis, experiment samples from ClickHouse.

Redis key layout (values are UTF-8 JSON unless noted):

Every key starts with a prefix (``camcount`` by default, ``settings.redis.key_prefix``):

- ``camcount:experiment:active``: the name of the running experiment (plain string); absent when none runs;
- ``camcount:experiment:{name}``: the experiment definition with its status, started_at, stopped_at and
  stop_reason (``Experiment.model_dump_json``); kept after it stops, so a name is never reused;
- ``camcount:experiments:history``: list of :class:`HistoryEntry`, oldest first (RPUSH).

The name ``active`` is reserved (its key would be the active pointer). Invariants: at most one experiment is
running, and it is the one the active key names; start and stop change the keys in one MULTI/EXEC guarded by
WATCH, so two concurrent starts cannot both succeed. The keys are not hash-tagged: a Redis Cluster would need
all three on one node.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import redis
from clickhouse_driver import Client
from pydantic import BaseModel

from foundation.settings import Settings
from experiments.assignment import assign
from experiments.config import Experiment
from experiments.report import ShadowSamples, VariantSamples
from foundation.errors import CamcountError

logger = logging.getLogger(__name__)

DEFAULT_PREFIX = "camcount"
ACTIVE_KEY = "{prefix}:experiment:active"
EXPERIMENT_KEY = "{prefix}:experiment:{name}"
HISTORY_KEY = "{prefix}:experiments:history"
RESERVED_NAMES = frozenset({"active"})
REDIS_TIMEOUT_S = 3.0
"""Connect and read/write timeout of the store's Redis client: ingestors consult it on their publish path."""

Clock = Callable[[], datetime]


class ExperimentStoreError(CamcountError, RuntimeError):
    """Base of experiment-store failures; the message says what to do."""

    code = "SYS_003"


class ExperimentAlreadyActive(ExperimentStoreError):
    """Another experiment is running; stop it before starting a new one."""


class ExperimentExists(ExperimentStoreError):
    """An experiment of that name already ran; its data would mix with the new one's."""


class ExperimentNotFound(ExperimentStoreError):
    """No experiment of that name was ever started."""


class ExperimentNotActive(ExperimentStoreError):
    """The experiment to stop is not the running one."""


class HistoryEntry(BaseModel):
    at: datetime
    event: Literal["started", "stopped"]
    experiment: str
    reason: str | None = None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ExperimentStore:
    """Start, stop and look up experiments in Redis (see the module docstring for keys and invariants)."""

    def __init__(self, redis_client: redis.Redis, clock: Clock = _utc_now, prefix: str = DEFAULT_PREFIX) -> None:
        """``prefix`` starts every key (settings.redis.key_prefix), so several deployments can share a Redis."""
        self.redis = redis_client
        self.clock = clock
        self.prefix = prefix
        self._active_key = ACTIVE_KEY.format(prefix=prefix)
        self._history_key = HISTORY_KEY.format(prefix=prefix)

    def start(self, experiment: Experiment) -> Experiment:
        """Record ``experiment`` as running from now and make it the active one; returns the stored state."""
        name = experiment.name
        if name in RESERVED_NAMES:
            raise ExperimentStoreError(f"experiment name {name!r} is reserved by the store's key layout; rename it")
        key = EXPERIMENT_KEY.format(prefix=self.prefix, name=name)
        now = self.clock()
        running = experiment.model_copy(
            update={"status": "running", "started_at": now, "stopped_at": None, "stop_reason": None}
        )
        entry = HistoryEntry(at=now, event="started", experiment=name)

        def write(pipe: redis.client.Pipeline) -> None:
            active = pipe.get(self._active_key)
            if active is not None:
                raise ExperimentAlreadyActive(
                    f"experiment {_text(active)!r} is running; stop it (ExperimentStore.stop) before starting "
                    f"{name!r}: only one experiment runs at a time"
                )
            if pipe.exists(key):
                raise ExperimentExists(
                    f"experiment {name!r} already ran; start it under a new name so its data stays separate"
                )
            pipe.multi()
            pipe.set(self._active_key, name)
            pipe.set(key, running.model_dump_json())
            pipe.rpush(self._history_key, entry.model_dump_json())

        self.redis.transaction(write, self._active_key, key)
        logger.info("experiment %s started with variants %s", name, running.variant_names)
        return running

    def stop(self, name: str, reason: str) -> Experiment:
        """Stop the running experiment ``name`` with ``reason``; returns the stored, stopped state."""
        key = EXPERIMENT_KEY.format(prefix=self.prefix, name=name)
        stopped: list[Experiment] = []

        def write(pipe: redis.client.Pipeline) -> None:
            active = pipe.get(self._active_key)
            if active is None or _text(active) != name:
                running = "none is running" if active is None else f"{_text(active)!r} is running"
                raise ExperimentNotActive(f"cannot stop {name!r}: it is not the active experiment ({running})")
            now = self.clock()
            experiment = self._load(pipe.get(key), name).model_copy(
                update={"status": "stopped", "stopped_at": now, "stop_reason": reason}
            )
            pipe.multi()
            pipe.delete(self._active_key)
            pipe.set(key, experiment.model_dump_json())
            pipe.rpush(self._history_key, HistoryEntry(at=now, event="stopped", experiment=name,
                                                 reason=reason).model_dump_json())
            stopped[:] = [experiment]

        self.redis.transaction(write, self._active_key, key)
        logger.info("experiment %s stopped: %s", name, reason)
        return stopped[0]

    def active(self) -> Experiment | None:
        """The running experiment, or None."""
        name = self.redis.get(self._active_key)
        return None if name is None else self.get(_text(name))

    def get(self, name: str) -> Experiment:
        """The stored state of experiment ``name``, running or stopped."""
        return self._load(self.redis.get(EXPERIMENT_KEY.format(prefix=self.prefix, name=name)), name)

    def history(self) -> list[HistoryEntry]:
        """Every start and stop, oldest first."""
        return [HistoryEntry.model_validate_json(_text(raw)) for raw in self.redis.lrange(self._history_key, 0, -1)]

    @classmethod
    def for_settings(cls, settings: Settings) -> "ExperimentStore":
        """The store of the deployment ``settings`` describe (their Redis and key prefix).

        A Redis that does not answer fails calls within ``REDIS_TIMEOUT_S`` instead of blocking them.
        """
        client = redis.Redis.from_url(settings.redis_url(), socket_timeout=REDIS_TIMEOUT_S,
                                      socket_connect_timeout=REDIS_TIMEOUT_S)
        return cls(client, prefix=settings.redis.key_prefix)

    @staticmethod
    def _load(raw: bytes | str | None, name: str) -> Experiment:
        if raw is None:
            raise ExperimentNotFound(f"no experiment {name!r} was ever started; check the name")
        return Experiment.model_validate_json(_text(raw))


# --- samples from ClickHouse (18.16: FINAL, groupArray, toStartOfHour; no CTEs, no window functions) -------

# One row per (variant, camera, assignment slot, hour). groupArray calls of one group see the rows in the same
# order, so the arrays stay aligned per frame. The slot expression is filled in by load_samples.
FRAMES_SQL = """
SELECT
    variant,
    camera_id,
    {slot} AS slot,
    toUnixTimestamp(toStartOfHour(capture_time)) AS hour,
    groupArray(infer_ms),
    groupArray(e2e_ms),
    groupArray(detections),
    groupArray(mean_confidence),
    groupArray(status = 'error')
FROM inference_log FINAL
WHERE experiment = %(experiment)s
  AND status != 'skipped'
GROUP BY variant, camera_id, slot, hour
"""

CROSSINGS_SQL = """
SELECT variant, camera_id, toUnixTimestamp(toStartOfHour(capture_time)) AS hour, count()
FROM crossing_events FINAL
WHERE experiment = %(experiment)s
GROUP BY variant, camera_id, hour
"""


SHADOW_SQL = """
SELECT control_detections, candidate_detections, matched_boxes, control_infer_ms, candidate_infer_ms
FROM shadow_pairs FINAL
WHERE experiment = %(experiment)s
ORDER BY camera_id, frame_seq
"""


def load_shadow_samples(clickhouse_client: Client, experiment: Experiment) -> ShadowSamples | None:
    """The experiment's shadow pairs (one row per shadowed frame), or None when shadow mode is off."""
    if not experiment.shadow.enabled:
        return None
    rows = clickhouse_client.execute(SHADOW_SQL, {"experiment": experiment.name})
    columns = [np.asarray(column, dtype=np.float64) for column in zip(*rows)] if rows else [np.zeros(0)] * 5
    return ShadowSamples(experiment.shadow.candidate or "", *columns)


def load_samples(clickhouse_client: Client, experiment: Experiment) -> dict[str, VariantSamples]:
    """Per-variant samples of every frame labelled with ``experiment``.

    A frame counts for a variant only if ``assign`` puts its camera (and slot) in that variant; other rows are
    shadow inferences or misrouted frames and are left out (logged). Camera-hours are the hours in which a
    variant inferred frames of a camera; one without crossings counts 0. Every variant is in the result,
    with empty arrays when it has no data.
    """
    # Every frame is labelled with its experiment by the ingestor and names are never reused, so the name alone
    # selects the rows; no time filter, as replayed footage can carry capture times ahead of the wall clock.
    params: dict[str, Any] = {"experiment": experiment.name}
    slot_ms = experiment.slot_minutes * 60_000 if experiment.assignment == "time_slot" else None
    slot = f"intDiv(capture_ts_ms, {slot_ms})" if slot_ms else "toUInt64(0)"
    columns: dict[str, list[list[Any]]] = defaultdict(lambda: [[], [], [], [], []])
    cameras: dict[str, set[str]] = defaultdict(set)
    camera_hours: dict[str, set[tuple[str, int]]] = defaultdict(set)
    foreign = 0
    for variant, camera_id, slot_index, hour, *arrays in clickhouse_client.execute(
        FRAMES_SQL.format(slot=slot), params
    ):
        served = assign(experiment, camera_id, slot_index * slot_ms if slot_ms else None).name
        if served != variant:
            foreign += len(arrays[0])
            continue
        for target, values in zip(columns[variant], arrays, strict=True):
            target.extend(values)
        cameras[variant].add(camera_id)
        camera_hours[variant].add((camera_id, hour))
    if foreign:
        logger.info("experiment %s: left out %d frames inferred by a variant their camera is not assigned to "
                    "(shadow runs or misrouted frames)", experiment.name, foreign)
    crossings: dict[tuple[str, str, int], int] = {
        (variant, camera_id, hour): count
        for variant, camera_id, hour, count in clickhouse_client.execute(CROSSINGS_SQL, params)
    }
    samples = {}
    for name in experiment.variant_names:
        infer_ms, e2e_ms, detections, confidence, error = columns[name]
        hours = sorted(camera_hours[name])
        samples[name] = VariantSamples(
            infer_ms=np.asarray(infer_ms, dtype=np.float64),
            e2e_ms=np.asarray(e2e_ms, dtype=np.float64),
            detections=np.asarray(detections, dtype=np.float64),
            mean_confidence=np.asarray(confidence, dtype=np.float64),
            error=np.asarray(error, dtype=np.bool_),
            crossings_per_camera_hour=np.asarray([crossings.get((name, c, h), 0) for c, h in hours],
                                                 dtype=np.float64),
            cameras=len(cameras[name]),
        )
    return samples
