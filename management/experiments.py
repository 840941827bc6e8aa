"""A/B experiment actions shared by ``camcount ab`` and the API's ``/api/v1/experiments``.

Reads (status, history, report) are not audited. ``start`` and ``stop`` run through
:func:`management.auditing.run_audited`: one audit row each, target the experiment's name, before/after the
experiment's stored state (``start``: the running experiment's name before, the started definition after).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clickhouse_driver import Client

from experiments.config import Experiment
from experiments.report import Report
from foundation.errors import UsageError
from management.auditing import run_audited
from models.registry import ModelRegistry
from sinks.audit import Actor, AuditAction, AuditLog
from sinks.experiment_samples import experiment_report
from sinks.experiment_store import ExperimentNotFound, ExperimentStore, HistoryEntry


@dataclass(frozen=True)
class ExperimentStatus:
    """The running experiment (None when frames go to the production model) and every start and stop."""

    active: Experiment | None
    history: list[HistoryEntry]


def find_experiment(store: ExperimentStore, name: str | None) -> Experiment:
    """Experiment ``name`` (ExperimentNotFound if it never ran), or the running one when ``name`` is None
    (UsageError when none runs)."""
    if name:
        return store.get(name)
    active = store.active()
    if active is None:
        raise UsageError("no experiment is running: name one (`camcount ab status` lists them)")
    return active


def experiment_status(store: ExperimentStore) -> ExperimentStatus:
    return ExperimentStatus(store.active(), store.history())


def report(client: Client, store: ExperimentStore, name: str | None) -> Report:
    """The statistics and decision of experiment ``name`` (default: the running one), from ClickHouse."""
    return experiment_report(client, find_experiment(store, name))


def start(store: ExperimentStore, registry: ModelRegistry, audit: AuditLog, actor: Actor,
          experiment: Experiment) -> Experiment:
    """Verify every variant's model (so no camera is switched to a model that is not there), then make
    ``experiment`` the running one. Returns its stored, running state."""
    def change() -> Experiment:
        for variant in experiment.variants:
            registry.verify(variant.model)
        return store.start(experiment)

    def before() -> dict[str, str | None]:
        active = store.active()
        return {"active": active.name if active is not None else None}

    return run_audited(audit, actor, AuditAction.EXPERIMENT_START, experiment.name, change, before=before,
                       after=lambda started: started.model_dump(mode="json"))


def stop(store: ExperimentStore, audit: AuditLog, actor: Actor, name: str | None, reason: str) -> Experiment:
    """Stop experiment ``name`` (default: the running one) with ``reason``; returns its stored, stopped state.
    ExperimentNotActive (recorded as a failed stop) when ``name`` is not the running experiment."""
    target = name or find_experiment(store, None).name

    def before() -> dict[str, Any] | None:
        try:
            return store.get(target).model_dump(mode="json")
        except ExperimentNotFound:
            return None

    return run_audited(audit, actor, AuditAction.EXPERIMENT_STOP, target, lambda: store.stop(target, reason),
                       before=before, after=lambda stopped: stopped.model_dump(mode="json"), reason=reason)
