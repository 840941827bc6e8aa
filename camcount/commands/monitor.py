"""``camcount monitor``: the model-monitoring role (drift per camera and model version, scheduled accuracy on
labelled clips), and its one-shot actions ``report`` and ``evaluate``. See ``camcount.monitor``."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
import time
from datetime import datetime, timezone

from camcount.commands.argtypes import positive_float
from foundation.clickhouse import clickhouse_client, is_unavailable
from foundation.errors import CamcountError, UsageError
from foundation.settings import Settings

log = logging.getLogger(__name__)


def _store(settings: Settings):
    from sinks.drift_store import DriftStore

    return DriftStore(clickhouse_client(settings))


def cmd_monitor_run(settings: Settings, args: argparse.Namespace) -> int:
    from camcount.monitor import (
        AccuracySchedule,
        DriftMonitor,
        EventsNotDelivered,
        HealthEventPublisher,
        MonitorMetrics,
    )
    from foundation.ops_http import OpsServer
    from foundation.process_metrics import register_resource_metrics
    from foundation.provision import wait_for_services

    wait_for_services(settings, timeout_s=15)
    metrics = MonitorMetrics()
    register_resource_metrics(metrics.registry)
    monitor = DriftMonitor(settings, _store(settings), HealthEventPublisher(settings), metrics)
    accuracy = AccuracySchedule(settings, _store(settings), metrics)  # its own client: it runs in another thread
    stop = threading.Event()
    ready = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())

    def status() -> dict:
        return {"last_window_start_ms": monitor.last_window_ms, "window_s": settings.monitor.window_s,
                "reference": settings.monitor.reference,
                "active": sorted(f"{k.camera} {k.model_ref}" for k in monitor.persistence.active()),
                "accuracy_error": accuracy.last_error}

    ops = None
    if settings.monitor.metrics_port and not args.once:
        ops = OpsServer(settings.monitor.metrics_port, metrics.registry, ready.is_set, {"/drift": status})
        ops.start()
    try:
        while not stop.is_set():
            try:
                if not ready.is_set():
                    monitor.resume()
                    ready.set()
                monitor.evaluate_due(int(time.time() * 1000))
                _poll_accuracy(accuracy)
                if args.once:
                    accuracy.join()
                    return 0
            except EventsNotDelivered as exc:
                log.warning("%s", exc.one_line())
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                log.warning("ClickHouse unavailable, retrying in %g s: %s", settings.monitor.poll_s, exc)
            stop.wait(settings.monitor.poll_s)
    finally:
        if ops is not None:
            ops.stop()
    return 0


def _poll_accuracy(accuracy) -> None:
    """Start the accuracy evaluation if due; a problem there (registry, ClickHouse) is logged, drift goes on."""
    try:
        accuracy.poll()
    except Exception as exc:
        accuracy.last_error = exc.one_line() if isinstance(exc, CamcountError) else repr(exc)
        log.warning("accuracy evaluation not started: %s", accuracy.last_error)


def _parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--until {text!r} is not an ISO time", remedy="e.g. 2024-05-01T10:00:00 (UTC)") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def cmd_monitor_report(settings: Settings, args: argparse.Namespace) -> int:
    from camcount.monitor import DriftMonitor, epoch_ms
    from monitoring.reference import window_of

    config = settings.monitor
    window_ms = config.window_s * 1000
    until_ms = (epoch_ms(_parse_time(args.until)) if args.until
                else int(time.time() * 1000) - int(config.lateness_s * 1000))
    last = window_of(until_ms, window_ms).start_ms - window_ms  # the newest window over by then
    first = window_of(last - int(args.hours * 3_600_000) + window_ms, window_ms).start_ms
    store = _store(settings)
    try:
        monitor = DriftMonitor(settings, store, publish=None, metrics=None, write=False)
        outcomes = [monitor.evaluate(window, until_ms) for window in _windows(first, last, window_ms)]
    finally:
        store.close()
    document = [{"window_start_ms": o.window.start_ms, **k.as_json()} for o in outcomes for k in o.keys]
    if args.json:
        print(json.dumps(document, indent=2))
        return 0
    print(f"drift of {len(document)} camera x model version windows of {config.window_s} s, reference "
          f"{config.reference}; episodes counted from the first window shown")
    print(f"{'window (UTC)':<20} {'camera':<14} {'model':<24} {'status':<18} {'frames':>6} "
          f"{'JS det':>7} {'JS conf':>7} {'JS area':>7} {'JS cls':>7} {'drift':<40} {'episode':<9} problem")
    for row in document:
        scores = row["scores"]
        start = datetime.fromtimestamp(row["window_start_ms"] / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        episode = "ONSET" if row["transition"] == "onset" else ("active" if row["active"] else "")
        problem = f"{row['problem']} ({row['cause']})" if row["problem"] else ""
        print(f"{start:<20} {row['camera']:<14} {row['model'] + '@' + row['version']:<24} {row['status']:<18} "
              f"{row['frames']:>6} {_fmt(scores.get('detections/jensen_shannon')):>7} "
              f"{_fmt(scores.get('confidence/jensen_shannon')):>7} {_fmt(scores.get('box_area/jensen_shannon')):>7} "
              f"{_fmt(scores.get('class_mix/jensen_shannon')):>7} {','.join(row['drifted_signals']):<40} "
              f"{episode:<9} {problem}")
    return 0


def _windows(first: int, last: int, window_ms: int):
    from monitoring.reference import Period

    return [Period(start, start + window_ms) for start in range(first, last + 1, window_ms)]


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def cmd_monitor_evaluate(settings: Settings, args: argparse.Namespace) -> int:
    from camcount.monitor import AccuracySchedule

    store = _store(settings)
    try:
        schedule = AccuracySchedule(settings, store, metrics=None)
        name, version = schedule.served()
        rows = schedule.evaluate(name, version)
    finally:
        store.close()
    summary = rows[-1]
    if args.json:
        print(json.dumps([{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}
                          for row in rows], indent=2))
        return 0
    print(f"{name}@{version}: {len(rows) - 1} labelled line(s), precision {summary['precision']:.3f}, recall "
          f"{summary['recall']:.3f}, count accuracy {summary['count_accuracy']:.3f} (written to model_accuracy)")
    return 0


def register_parser(sub: argparse._SubParsersAction) -> None:
    monitor = sub.add_parser("monitor", help="model monitoring: drift per camera and model version, scheduled "
                             "accuracy on labelled clips; `monitor report`, `monitor evaluate`")
    monitor.add_argument("--once", action="store_true", help="evaluate the windows that are due (and the accuracy, "
                         "if due) once, then exit, e.g. from a cron job")
    monitor.set_defaults(handler=cmd_monitor_run)
    actions = monitor.add_subparsers(dest="monitor_action", metavar="[ACTION]")
    run = actions.add_parser("run", help="the long-running role (the default action)")
    run.add_argument("--once", action="store_true", help="evaluate what is due once, then exit")
    run.set_defaults(handler=cmd_monitor_run)
    report = actions.add_parser("report", help="score the recent windows now and print them (read-only: no rows, "
                                "no events)")
    report.add_argument("--hours", type=positive_float, default=1.0, help="how far back (default 1)")
    report.add_argument("--until", help="end of the period, ISO time, UTC unless it says (default: now less "
                        "monitor.lateness_s)")
    report.add_argument("--json", action="store_true", help="one JSON object per camera x model version window")
    report.set_defaults(handler=cmd_monitor_report)
    evaluate = actions.add_parser("evaluate", help="evaluate the production version on the labelled clips now and "
                                  "write the result to model_accuracy")
    evaluate.add_argument("--json", action="store_true", help="print the rows written as JSON")
    evaluate.set_defaults(handler=cmd_monitor_evaluate)
