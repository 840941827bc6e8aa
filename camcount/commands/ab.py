"""``camcount ab ...``: A/B experiments of model versions and thresholds on live camera traffic."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from camcount.commands.actor import add_actor_option, cli_actor
from camcount.commands.argtypes import positive_float
from foundation.clickhouse import clickhouse_client
from foundation.errors import UsageError
from foundation.settings import Settings

if TYPE_CHECKING:
    from experiments.report import Report

log = logging.getLogger(__name__)


def _store(settings: Settings):
    from sinks.experiment_store import ExperimentStore

    return ExperimentStore.for_settings(settings)


def _experiment(settings: Settings, name: str | None):
    from management.experiments import find_experiment

    return find_experiment(_store(settings), name)


def _audit_log(settings: Settings):
    from sinks.audit import AuditLog

    return AuditLog.for_settings(settings)


def cmd_start(settings: Settings, args: argparse.Namespace) -> int:
    from experiments.config import load_experiment
    from management.experiments import start
    from models.loading import open_model_registry

    try:
        document = yaml.safe_load(Path(args.file).read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UsageError(f"{args.file}: not a valid YAML or JSON experiment definition: "
                        f"{' '.join(str(exc).split())}") from exc
    experiment = load_experiment(document)
    # start verifies every variant's model before any camera is switched to one that isn't there
    started = start(_store(settings), open_model_registry(settings), _audit_log(settings), cli_actor(args),
                    experiment)
    print(f"experiment {started.name} running; variants: "
          + ", ".join(f"{v.name}={v.model} (weight {v.weight:g})" for v in started.variants))
    print("ingestors pick it up within seconds; frames get the variant of their camera")
    return 0


def cmd_stop(settings: Settings, args: argparse.Namespace) -> int:
    from management.experiments import stop

    stopped = stop(_store(settings), _audit_log(settings), cli_actor(args), args.name, args.reason)
    print(f"experiment {stopped.name} stopped: {stopped.stop_reason}")
    return 0


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    from management.experiments import experiment_status

    status = experiment_status(_store(settings))
    active = status.active
    if active is None:
        print("no experiment running: frames go to the production model")
    else:
        print(f"running: {active.name} since {active.started_at:%Y-%m-%d %H:%M:%S} UTC, control {active.control}, "
              f"assignment per {active.assignment}")
        for v in active.variants:
            overrides = ", ".join(f"{k} {getattr(v, k)}" for k in ("confidence_threshold", "nms_threshold")
                                  if getattr(v, k) is not None)
            print(f"  {v.name:<12} {v.model:<28} weight {v.weight:g}" + (f"  ({overrides})" if overrides else ""))
    history = status.history
    if history:
        print("history:")
        for entry in history[-10:]:
            print(f"  {entry.at:%Y-%m-%d %H:%M:%S}  {entry.event:<8} {entry.experiment}"
                  + (f"  ({entry.reason})" if entry.reason else ""))
    return 0


def build_report_for(settings: Settings, name: str | None) -> Report:
    from management.experiments import report

    return report(clickhouse_client(settings), _store(settings), name)


def cmd_report(settings: Settings, args: argparse.Namespace) -> int:
    from experiments.rendering import render_html, render_table

    report = build_report_for(settings, args.name)
    if args.html:
        Path(args.html).write_text(render_html(report))
    print(report.to_json() if args.json else render_table(report))
    if args.html and not args.json:
        print(f"charts: {args.html}")
    return 0


def cmd_promote(settings: Settings, args: argparse.Namespace) -> int:
    from management.models import promote, verify_model
    from models.loading import open_model_registry

    report = build_report_for(settings, args.name)
    experiment = _experiment(settings, args.name)
    variant = experiment.variant(variant_to_promote(report, experiment.variant_names, args.variant, args.force))
    registry = open_model_registry(settings)
    model = verify_model(registry, variant.model)
    promote(registry, _audit_log(settings), cli_actor(args), model.manifest.name, model.manifest.version,
            reason=f"variant {variant.name} of experiment {experiment.name}"
                   + (" (forced)" if args.force else f": {report.reason}"))
    print(f"{model.manifest.name}@production -> {model.manifest.version} (variant {variant.name} of "
          f"{experiment.name}); running workers swap it in within {settings.inference.model_poll_s:g} s")
    if variant.confidence_threshold is not None or variant.nms_threshold is not None:
        print("note: the variant's threshold overrides are not part of the model; set them in its manifest")
    return 0


def variant_to_promote(report: Report, variant_names: list[str], requested: str | None, force: bool) -> str:
    """The variant ``ab promote`` moves to production: the report's winner, or ``requested``.

    Without ``force`` the report must say "promote" and ``requested``, if given, must be its winner; with it,
    any variant of the experiment goes. Raises UsageError saying why not.
    """

    if requested is not None and requested not in variant_names:
        raise UsageError(f"experiment {report.experiment!r} has no variant {requested!r}; "
                        f"it has {', '.join(variant_names)}")
    chosen = requested or report.promote
    if force and chosen is not None:
        return chosen
    if chosen is None or report.decision != "promote":
        raise UsageError(f"the report says {report.decision!r}: {report.reason} "
                        "(use --variant NAME --force to promote anyway)")
    if chosen != report.promote:
        raise UsageError(f"the report's winner is {report.promote!r}, not {chosen!r} "
                        f"(add --force to promote {chosen!r} anyway)")
    return chosen


def cmd_guard(settings: Settings, args: argparse.Namespace) -> int:
    """Watches the running experiment's inference log and stops it when a candidate breaches a guardrail.

    Runs until SIGINT/SIGTERM: a breach must last ``breach_seconds`` of consecutive checks to stop an experiment.
    """
    from experiments.guardrails import GuardrailMonitor
    from management.experiments import stop

    store = _store(settings)
    audit, actor = _audit_log(settings), cli_actor(args)
    client = clickhouse_client(settings)
    stopping = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    monitor: GuardrailMonitor | None = None
    seen_ms = 0
    while not stopping.is_set():
        experiment = store.active()
        if experiment is None:
            monitor = None
        else:
            if monitor is None or monitor.experiment.name != experiment.name:
                monitor, seen_ms = GuardrailMonitor(experiment), 0
                log.info("guarding experiment %s", experiment.name)
            rows = client.execute(
                "SELECT variant, capture_ts_ms, e2e_ms, status = 'error' FROM inference_log FINAL "
                "WHERE experiment = %(e)s AND capture_ts_ms > %(since)s AND status != 'skipped' "
                "ORDER BY capture_ts_ms", {"e": experiment.name, "since": seen_ms})
            candidates = {v.name for v in experiment.candidates}
            for variant, ts_ms, latency_ms, error in rows:
                if variant in candidates:
                    monitor.observe(variant, ts_ms, latency_ms, bool(error))
                seen_ms = max(seen_ms, ts_ms)
            now_ms = max(int(time.time() * 1000), seen_ms)
            drift = (_window_output_drift(client, experiment, now_ms)
                     if experiment.guardrails.max_output_drift is not None else None)
            decision = monitor.check(now_ms, drift)
            if decision is not None:
                stop(store, audit, actor, experiment.name, decision.reason)
                log.warning("experiment %s stopped automatically: %s", experiment.name, decision.reason)
                print(f"experiment {experiment.name} stopped: {decision.reason}", flush=True)
                monitor = None
        stopping.wait(args.interval)
    return 0


def _window_output_drift(client, experiment, now_ms: int) -> dict[str, float]:
    """Per candidate, the larger Jensen-Shannon distance (detections per frame, mean confidence) of its outputs in
    the guardrail window from the control's; candidates (or a control) with fewer than min_window_frames frames
    there are left out."""
    from monitoring.distances import Distribution, jensen_shannon

    guardrails = experiment.guardrails
    rows = client.execute(
        "SELECT variant, groupArray(detections), groupArray(mean_confidence) FROM inference_log FINAL "
        "WHERE experiment = %(e)s AND status = 'ok' AND capture_ts_ms > %(since)s AND capture_ts_ms <= %(now)s "
        "GROUP BY variant", {"e": experiment.name, "since": now_ms - int(guardrails.window_seconds * 1000),
                             "now": now_ms})
    outputs = {variant: (list(counts), [c for n, c in zip(counts, confidences) if n > 0])
               for variant, counts, confidences in rows}
    control = outputs.get(experiment.control)
    drift: dict[str, float] = {}
    for candidate in experiment.candidates:
        current = outputs.get(candidate.name)
        if control is None or current is None:
            continue
        scores = [jensen_shannon(Distribution.of(reference), Distribution.of(values))
                  for reference, values in zip(control, current)
                  if len(reference) >= guardrails.min_window_frames and len(values) >= guardrails.min_window_frames]
        if scores:
            drift[candidate.name] = max(scores)
    return drift


def register_parser(sub: argparse._SubParsersAction) -> None:
    ab = sub.add_parser("ab", help="A/B experiments: start, stop, status, report, promote, guard")
    actions = ab.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = actions.add_parser("start", help="start an experiment defined in a YAML/JSON file (audited)")
    p.add_argument("file", help="experiment definition (name, variants with model and weight, ...)")
    add_actor_option(p)
    p.set_defaults(handler=cmd_start)
    p = actions.add_parser("stop", help="stop the running experiment (audited)")
    p.add_argument("name", nargs="?", help="experiment name (default: the running one)")
    p.add_argument("--reason", default="stopped by operator")
    add_actor_option(p)
    p.set_defaults(handler=cmd_stop)
    p = actions.add_parser("status", help="the running experiment and recent history")
    p.set_defaults(handler=cmd_status)
    p = actions.add_parser("report", help="per-variant statistics, tests and a decision, from ClickHouse")
    p.add_argument("name", nargs="?", help="experiment name (default: the running one)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--html", metavar="PATH", help="also write an HTML page with latency and count charts")
    p.set_defaults(handler=cmd_report)
    p = actions.add_parser("promote", help="move the winning variant's model to production (audited)")
    p.add_argument("name", nargs="?", help="experiment name (default: the running one)")
    p.add_argument("--variant", help="promote this variant instead of the report's winner (needs --force)")
    p.add_argument("--force", action="store_true", help="promote even though the report does not say so")
    add_actor_option(p)
    p.set_defaults(handler=cmd_promote)
    p = actions.add_parser("guard", help="stop the running experiment when a candidate breaches its guardrails "
                           "(each stop audited)")
    p.add_argument("--interval", type=positive_float, default=10.0, help="seconds between checks (default 10)")
    add_actor_option(p)
    p.set_defaults(handler=cmd_guard)
