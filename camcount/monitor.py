"""``camcount monitor``: drift of every camera and model version's outputs, and the production version's accuracy
on labelled clips, as ClickHouse rows, Prometheus gauges and model-health events on Kafka.

Drift (``DriftMonitor``), per window of ``monitor.window_s`` once it is over (plus ``monitor.lateness_s``):

1. read each camera and model version's detections per frame, mean confidence per frame, box areas and class mix
   from ``inference_log`` (``sinks.drift_store``), and its reference (``monitoring.reference``);
2. score the window against the reference (``monitoring.drift``) and diagnose what drifted: one camera or the
   model version (``monitoring.diagnosis``);
3. update each key's episode (``monitoring.persistence``): k consecutive drifted windows are an onset;
4. publish one model-health event per onset (and wait for the broker's acknowledgement), then write the window's
   rows (``drift_windows``, ``drift_scores``) and set the gauges.

Nothing is written before the events are acknowledged, so a window whose event could not be published is evaluated
again on the next poll and its event published then (at-least-once; the event id is deterministic). A restart
resumes after the newest window in ``drift_windows`` (no further back than ``monitor.backfill_s``) with every
key's episode restored from its stored windows, so an onset is never published twice by a restart.

Accuracy (``AccuracySchedule``): the version ``model.reference`` resolves to is evaluated on the labelled clips
(``camcount.accuracy.run_accuracy``) when it has no evaluation younger than ``monitor.accuracy_interval_s``: at
start, after a promotion, and then every interval. The evaluation runs in a background thread (it runs the model:
minutes on a CPU), writes ``model_accuracy`` rows and sets ``camcount_model_accuracy_ratio``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from foundation.errors import CamcountError
from foundation.settings import MonitorSettings, Settings
from monitoring.diagnosis import Diagnosis, Key, diagnose
from monitoring.drift import Comparison, Thresholds, compare
from monitoring.persistence import Persistence
from monitoring.reference import Period, due_windows, pinned_after, same_hour_last_week
from sinks.drift_store import DriftStore, utc

log = logging.getLogger(__name__)


class EventsNotDelivered(CamcountError):
    """The broker did not acknowledge model-health events; their window is evaluated again on the next poll."""

    code = "SYS_001"
    detail = "model-health-events-not-delivered"


class NoLabelledFootage(CamcountError):
    """The accuracy evaluation found none of the footage its ground-truth files label, so it scored nothing."""

    code = "CFG_001"
    detail = "no-labelled-footage"


def epoch_ms(moment: datetime) -> int:
    """Epoch milliseconds of a datetime; a naive one is taken as UTC (as settings and ClickHouse give them)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


class MonitorMetrics:
    """What ``camcount monitor`` exports on its ``/metrics``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        key = ("camera", "model", "version")
        self.drift_score = Gauge(
            "camcount_drift_score", "Latest drift score of a camera's outputs under a model version against its "
            "reference (signal: detections|confidence|box_area|class_mix; measure: psi|jensen_shannon|wasserstein, "
            "class_mix has no wasserstein)",
            (*key, "signal", "measure"), registry=self.registry)
        self.drift_active = Gauge(
            "camcount_drift_active", "1 while drift persists (monitor.persistence_windows drifted windows in a row "
            "started it; as many quiet ones end it)", key, registry=self.registry)
        self.windows = Counter("camcount_drift_windows", "Camera x model version windows evaluated, by status "
                               "(judged, insufficient-data, no-reference, reference-period)", ("status",),
                               registry=self.registry)
        self.events = Counter("camcount_model_health_events", "Model-health events published, by problem "
                              "(camera, model, undetermined)", ("problem",), registry=self.registry)
        self.last_window_end = Gauge("camcount_drift_window_end_timestamp_seconds",
                                     "End of the newest window the monitor evaluated", registry=self.registry)
        self.accuracy = Gauge(
            "camcount_model_accuracy_ratio", "Accuracy of the production model version on the labelled clips at its "
            "latest evaluation (metric: precision|recall|count_accuracy; higher is better)",
            ("model", "version", "metric"), registry=self.registry)
        self.accuracy_time = Gauge("camcount_model_accuracy_evaluated_timestamp_seconds",
                                   "When the production model version was last evaluated on the labelled clips",
                                   ("model", "version"), registry=self.registry)
        self._series: dict[Gauge, set[tuple[str, ...]]] = {}
        """Per gauge: the label sets this exporter set and has not removed (prometheus_client has no public
        way to list a metric's children)."""

    def set(self, gauge: Gauge, labels: tuple[str, ...], value: float) -> None:
        """Set one series of a labelled gauge, remembering its labels for :meth:`remove`."""
        gauge.labels(*labels).set(value)
        self._series.setdefault(gauge, set()).add(labels)

    def remove(self, gauge: Gauge, labels: tuple[str, ...]) -> None:
        """Remove one series set through :meth:`set`."""
        gauge.remove(*labels)
        self._series.get(gauge, set()).discard(labels)

    def series(self, gauge: Gauge) -> list[tuple[str, ...]]:
        """The label sets of ``gauge`` set through :meth:`set` and not removed since."""
        return sorted(self._series.get(gauge, ()))

    def set_accuracy(self, model: str, version: str, values: dict[str, float], evaluated_ms: int) -> None:
        """Export one version's accuracy; any other version's values are removed (only the served one alerts)."""
        for labels in self.series(self.accuracy):
            if labels[:2] != (model, version):
                self.remove(self.accuracy, labels)
        for labels in self.series(self.accuracy_time):
            if labels != (model, version):
                self.remove(self.accuracy_time, labels)
        for metric, value in values.items():
            self.set(self.accuracy, (model, version, metric), value)
        self.set(self.accuracy_time, (model, version), evaluated_ms / 1000)

    def forget(self, keys: set[Key]) -> None:
        """Remove the drift series of keys no longer seen."""
        for labels in self.series(self.drift_score):
            if Key(*labels[:3]) in keys:
                self.remove(self.drift_score, labels)
        for labels in self.series(self.drift_active):
            if Key(*labels) in keys:
                self.remove(self.drift_active, labels)


class HealthEventPublisher:
    """Publishes model-health events on ``kafka.model_health_topic`` and waits for the broker's acknowledgement."""

    def __init__(self, settings: Settings) -> None:
        from confluent_kafka import Producer

        from foundation.kafka import producer_config

        self.topic = settings.kafka.model_health_topic
        self._producer = Producer(producer_config(settings))

    def __call__(self, events: list[dict[str, Any]]) -> None:
        from schemas import MODEL_HEALTH

        failures: list[str] = []

        def delivered(error, _message) -> None:
            if error is not None:
                failures.append(error.str())

        for event in events:
            self._producer.produce(self.topic, MODEL_HEALTH.encode(event),
                                   f"{event['model_name']}@{event['model_version']}".encode(),
                                   headers=MODEL_HEALTH.headers(), on_delivery=delivered)
        remaining = self._producer.flush(30)
        if failures or remaining:
            raise EventsNotDelivered(f"{len(failures) + remaining} model-health event(s) for {self.topic} not "
                                     f"acknowledged ({'; '.join(failures)}); the window is evaluated again",
                                     remedy="check the broker")


@dataclass
class KeyOutcome:
    """One camera and model version in one window."""

    key: Key
    comparison: Comparison
    reference: Period | None
    transition: str
    active: bool
    diagnosis: Diagnosis | None
    event: dict[str, Any] | None

    def as_json(self) -> dict[str, Any]:
        c = self.comparison
        return {
            "camera": self.key.camera, "model": self.key.model, "version": self.key.version, "status": c.status,
            "frames": c.frames, "reference_frames": c.reference_frames,
            "reference": None if self.reference is None else [self.reference.start_ms, self.reference.end_ms],
            "scores": {f"{s.signal}/{s.measure}": round(s.value, 4) for s in c.scores},
            "drifted_signals": list(c.drifted_signals), "transition": self.transition, "active": self.active,
            "problem": None if self.diagnosis is None else self.diagnosis.problem,
            "cause": None if self.diagnosis is None else self.diagnosis.cause,
            "event_id": None if self.event is None else self.event["event_id"],
        }


@dataclass
class WindowOutcome:
    window: Period
    keys: list[KeyOutcome] = field(default_factory=list)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [k.event for k in self.keys if k.event is not None]


def event_id(key: Key, window_start_ms: int) -> str:
    digest = hashlib.sha256(f"drift|{key.camera}|{key.model}|{key.version}|{window_start_ms}".encode()).hexdigest()
    return str(uuid.UUID(digest[:32]))


class DriftMonitor:
    """Evaluates windows (see the module docstring). ``publish`` gets each window's events (None: none are
    published); ``write=False`` leaves ClickHouse untouched (``camcount monitor report``)."""

    def __init__(self, settings: Settings, store: DriftStore,
                 publish: Callable[[list[dict[str, Any]]], None] | None = None,
                 metrics: MonitorMetrics | None = None, write: bool = True) -> None:
        self.config: MonitorSettings = settings.monitor
        self.store = store
        self.publish = publish
        self.metrics = metrics
        self.write = write
        self.window_ms = self.config.window_s * 1000
        self.thresholds = Thresholds(self.config.psi_threshold, self.config.js_threshold,
                                     self.config.wasserstein_threshold)
        self.persistence = Persistence(self.config.persistence_windows)
        self.last_window_ms: int | None = None
        self._first_frames: dict[Key, int] = {}
        self._references: dict[tuple, Any] = {}
        self._pinned: Period | None = None
        if self.config.reference_start is not None and self.config.reference_end is not None:
            self._pinned = Period(epoch_ms(self.config.reference_start), epoch_ms(self.config.reference_end))
        self._seen: dict[Key, int] = {}

    # --- start --------------------------------------------------------------------------------------------------
    def resume(self) -> None:
        """Continue after the newest stored window, with every key's episode restored from its stored windows."""
        self.last_window_ms = self.store.last_window_ms(self.config.window_s)
        if self.last_window_ms is None:
            return
        since = self.last_window_ms - 4 * self.config.persistence_windows * self.window_ms
        for key, windows in self.store.history(since, self.config.window_s).items():
            history = [(w.window_ms, w.drifted if w.judged else None) for w in windows]
            state = self.persistence.resume(key, history, windows[-1].active)
            if self.metrics is not None:
                self.metrics.set(self.metrics.drift_active, (key.camera, key.model, key.version), int(state.active))
        log.info("resuming after the window of %s", utc(self.last_window_ms).isoformat())

    # --- windows ------------------------------------------------------------------------------------------------
    def due(self, now_ms: int) -> list[Period]:
        return due_windows(now_ms, self.window_ms, int(self.config.lateness_s * 1000), self.last_window_ms,
                           self.config.backfill_s * 1000)

    def evaluate_due(self, now_ms: int) -> list[WindowOutcome]:
        outcomes = []
        for window in self.due(now_ms):
            outcomes.append(self.evaluate(window, now_ms))
        return outcomes

    def evaluate(self, window: Period, now_ms: int) -> WindowOutcome:
        """Score, diagnose, publish and write one window (see the module docstring)."""
        current = self.store.samples(window)
        comparisons: dict[Key, Comparison] = {}
        references: dict[Key, Period | None] = {}
        for key in sorted(current, key=lambda k: (k.camera, k.model, k.version)):
            reference, sample = self._reference(key, window)
            references[key] = reference
            if reference is not None and window.start_ms < reference.end_ms and (
                    self.config.reference == "pinned" and (self._pinned is None or reference.overlaps(window))):
                # inside (or, for the automatic pin, before the end of) the reference period: nothing to compare
                comparisons[key] = Comparison("reference-period", frames=current[key].frames)
                continue
            comparisons[key] = compare(sample, current[key], self.thresholds, tuple(self.config.measures),
                                       self.config.min_measures, self.config.min_frames)
        diagnoses = diagnose(comparisons, self.config.model_problem_min_cameras, self.config.model_problem_share)
        snapshot = self.persistence.snapshot()
        outcome = WindowOutcome(window)
        for key, comparison in comparisons.items():
            transition = self.persistence.update(key, window.start_ms,
                                                 comparison.drifted if comparison.judged else None)
            state = self.persistence.state(key)
            event = None
            if transition == "onset":
                event = self._event(key, window, comparison, diagnoses[key], state.since or window.start_ms,
                                    references[key], now_ms)
            outcome.keys.append(KeyOutcome(key, comparison, references[key], transition, state.active,
                                           diagnoses.get(key), event))
        try:
            if outcome.events and self.publish is not None:
                self.publish(outcome.events)
            if self.write:
                self.store.write(*self._rows(outcome, now_ms))
        except BaseException:
            self.persistence.restore(snapshot)  # the window is evaluated again, from the same states
            raise
        self.last_window_ms = window.start_ms
        self._export(outcome)
        for key_outcome in outcome.keys:
            if key_outcome.event is not None:
                log.warning("drift persists on camera %s under %s (%s problem, %s): model-health event %s",
                            key_outcome.key.camera, key_outcome.key.model_ref, key_outcome.diagnosis.problem,
                            key_outcome.diagnosis.cause, key_outcome.event["event_id"])
        return outcome

    def _reference(self, key: Key, window: Period) -> tuple[Period | None, Any]:
        """The reference period of ``key``'s window and its sample (None when it has no frames)."""
        if self.config.reference == "same-hour-last-week":
            period = same_hour_last_week(window)
            return period, self._camera_reference(period).get(key.camera)
        if self._pinned is not None:
            return self._pinned, self._camera_reference(self._pinned).get(key.camera)
        if key not in self._first_frames:
            self._first_frames.update(self.store.first_frames([key]))
        first = self._first_frames.get(key)
        if first is None:
            return None, None
        period = pinned_after(first, self.config.reference_s * 1000)
        if window.start_ms < period.end_ms:
            return period, None
        cache_key = ("key", key, period)
        if cache_key not in self._references:
            self._references[cache_key] = self.store.samples(period, key).get(key)
        return period, self._references[cache_key]

    def _camera_reference(self, period: Period) -> dict[str, Any]:
        cache_key = ("cameras", period)
        if cache_key not in self._references:
            if len(self._references) > 256:  # same-hour-last-week moves on every hour
                self._references.clear()
            self._references[cache_key] = self.store.camera_samples(period)
        return self._references[cache_key]

    def _event(self, key: Key, window: Period, comparison: Comparison, diagnosis: Diagnosis, since_ms: int,
               reference: Period | None, now_ms: int) -> dict[str, Any]:
        return {
            "event_id": event_id(key, window.start_ms), "type": "DRIFT", "published_ts_ms": now_ms,
            "camera_id": key.camera, "model_name": key.model, "model_version": key.version,
            "problem": diagnosis.problem.upper(), "cause": diagnosis.cause, "cameras": list(diagnosis.cameras),
            "window_start_ms": window.start_ms, "window_seconds": self.config.window_s, "since_ms": since_ms,
            "windows": self.config.persistence_windows, "signals": list(comparison.drifted_signals),
            "scores": [{"signal": s.signal, "measure": s.measure, "value": s.value, "threshold": s.threshold}
                       for s in comparison.scores],
            "frames": comparison.frames, "reference_mode": self.config.reference,
            "reference_start_ms": reference.start_ms if reference else 0,
            "reference_end_ms": reference.end_ms if reference else 0,
            "reference_frames": comparison.reference_frames, "retrain_suggested": diagnosis.problem == "model",
        }

    def _rows(self, outcome: WindowOutcome, now_ms: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        window = outcome.window
        windows, scores = [], []
        for k in outcome.keys:
            c = k.comparison
            base = {"window_start": utc(window.start_ms), "window_seconds": self.config.window_s,
                    "camera_id": k.key.camera, "model_name": k.key.model, "model_version": k.key.version,
                    "evaluated_ms": now_ms}
            for s in c.scores:
                scores.append({**base, "signal": s.signal, "measure": s.measure, "score": s.value,
                               "threshold": s.threshold, "above": int(s.above)})
            detections = c.means.get("detections", (float("nan"), float("nan")))
            confidence = c.means.get("confidence", (float("nan"), float("nan")))
            box_area = c.means.get("box_area", (float("nan"), float("nan")))
            class_share = c.means.get("class_mix", (float("nan"), float("nan")))
            windows.append({
                **base, "status": c.status, "drifted": int(c.drifted), "drifted_signals": list(c.drifted_signals),
                "active": int(k.active), "onset": int(k.event is not None),
                "problem": k.diagnosis.problem if k.diagnosis else "",
                "cause": k.diagnosis.cause if k.diagnosis else "",
                "event_id": k.event["event_id"] if k.event else "", "frames": c.frames,
                "reference_frames": c.reference_frames, "reference_mode": self.config.reference,
                "reference_start": utc(k.reference.start_ms) if k.reference else utc(0),
                "reference_end": utc(k.reference.end_ms) if k.reference else utc(0),
                "empty_share": _finite(c.empty_shares[1]), "mean_detections": _finite(detections[1]),
                "mean_confidence": _finite(confidence[1]), "reference_mean_detections": _finite(detections[0]),
                "reference_mean_confidence": _finite(confidence[0]),
                "mean_box_area": _finite(10 ** box_area[1]), "reference_mean_box_area": _finite(10 ** box_area[0]),
                "dominant_class": c.dominant_class, "class_share": _finite(class_share[1]),
                "reference_class_share": _finite(class_share[0]),
            })
        return windows, scores

    def _export(self, outcome: WindowOutcome) -> None:
        if self.metrics is None:
            return
        m = self.metrics
        m.last_window_end.set(outcome.window.end_ms / 1000)
        for k in outcome.keys:
            self._seen[k.key] = outcome.window.start_ms
            m.windows.labels(k.comparison.status).inc()
            labels = (k.key.camera, k.key.model, k.key.version)
            m.set(m.drift_active, labels, int(k.active))
            for s in k.comparison.scores:
                m.set(m.drift_score, (*labels, s.signal, s.measure), s.value)
            if k.event is not None:
                m.events.labels(k.diagnosis.problem).inc()
        # a key unseen for as long as it takes to end an episode is gone (camera removed, version replaced)
        horizon = outcome.window.start_ms - 2 * self.config.persistence_windows * self.window_ms
        gone = {key for key, last in self._seen.items() if last < horizon}
        if gone:
            m.forget(gone)
            for key in gone:
                del self._seen[key]


def _finite(value: float) -> float:
    return value if value == value else 0.0  # NaN (no frames, no boxes) is stored as 0


# --- accuracy -------------------------------------------------------------------------------------------------
def accuracy_rows(report: dict[str, Any], evaluated_ms: int, evaluation_id: str) -> list[dict[str, Any]]:
    """``model_accuracy`` rows of a ``run_accuracy`` report: one per line and a summary (``line = ''``)."""
    name, _, version = report["model"].partition("@")
    base = {"evaluated_at": utc(evaluated_ms), "evaluated_ms": evaluated_ms, "evaluation_id": evaluation_id,
            "model_name": name, "model_version": version}
    rows = []
    totals = {"labelled": 0, "emitted": 0, "matched": 0, "frames": 0, "seconds": 0.0}
    for footage in report["footages"]:
        totals["frames"] += footage["frames"]
        totals["seconds"] += footage["seconds"]
        for line in footage["lines"]:
            labelled = line["matched"] + len(line["misses"])
            emitted = line["matched"] + len(line["false_positives"])
            rows.append({**base, "video": footage["video"], "truth_file": line["truth"], "line": line["line"],
                         "precision": line["precision"], "recall": line["recall"],
                         "count_accuracy": count_accuracy(labelled, emitted), "labelled": labelled,
                         "emitted": emitted, "matched": line["matched"], "frames": footage["frames"],
                         "seconds": footage["seconds"]})
            totals["labelled"] += labelled
            totals["emitted"] += emitted
            totals["matched"] += line["matched"]
    summary = report["summary"]
    rows.append({**base, "video": "", "truth_file": "", "line": "", "precision": summary["precision"],
                 "recall": summary["recall"], "count_accuracy": count_accuracy(totals["labelled"], totals["emitted"]),
                 **totals})
    return rows


def count_accuracy(labelled: int, emitted: int) -> float:
    """1 - |emitted - labelled| / labelled, at least 0 (1.0 when nothing was labelled and nothing emitted)."""
    if labelled == 0:
        return 1.0 if emitted == 0 else 0.0
    return max(0.0, 1.0 - abs(emitted - labelled) / labelled)


def truth_files(config: MonitorSettings) -> list[Path] | None:
    """The configured ground-truth files (folders expanded to their ``*.json``); None: the shipped ones."""
    if not config.accuracy_truth:
        return None
    files: list[Path] = []
    for entry in config.accuracy_truth:
        path = Path(entry)
        files += sorted(path.glob("*.json")) if path.is_dir() else [path]
    return files


class AccuracySchedule:
    """Evaluates the served production version on the labelled clips when it is due (see the module docstring)."""

    def __init__(self, settings: Settings, store: DriftStore, metrics: MonitorMetrics | None,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.interval_ms = int(settings.monitor.accuracy_interval_s * 1000)
        self._thread: threading.Thread | None = None
        self._failed: dict[str, float] = {}
        self.last_error: str | None = None

    def served(self) -> tuple[str, str]:
        """(model name, version) that ``model.reference`` resolves to now."""
        from models.loading import open_model_registry

        manifest = open_model_registry(self.settings).resolve(self.settings.model.reference).manifest
        return manifest.name, manifest.version

    def is_due(self) -> tuple[bool, tuple[str, str]]:
        """Whether the served version needs an evaluation now, and which version it is. Exports its latest stored
        evaluation, so the gauges survive a restart."""
        name, version = self.served()
        latest = self.store.latest_accuracy(name, version)
        if latest is not None and self.metrics is not None:
            self.metrics.set_accuracy(name, version, {"precision": latest.precision, "recall": latest.recall,
                                                      "count_accuracy": latest.count_accuracy}, latest.evaluated_ms)
        now_ms = int(self.clock() * 1000)
        failed_at = self._failed.get(f"{name}@{version}")
        if failed_at is not None and now_ms - failed_at < min(self.interval_ms, 3_600_000):
            return False, (name, version)  # a failed evaluation is retried after an hour (or the interval)
        return latest is None or now_ms - latest.evaluated_ms >= self.interval_ms, (name, version)

    def evaluate(self, name: str, version: str) -> list[dict[str, Any]]:
        """Run the evaluation now (in this thread); returns the rows written."""
        from camcount.accuracy import run_accuracy

        config = self.settings.monitor
        started_ms = int(self.clock() * 1000)
        data_dir = Path(config.accuracy_data_dir) if config.accuracy_data_dir else None
        try:
            report = run_accuracy(self.settings, truth_files(config), model_ref=f"{name}@{version}",
                                  data_dir=data_dir)
            if not report["footages"]:
                missing = ", ".join(s["footage"] for s in report["skipped"]) or "none named"
                raise NoLabelledFootage(f"no labelled footage to evaluate {name}@{version} on (missing: {missing})",
                                        remedy="put it under monitor.accuracy_data_dir (default <home>/data), "
                                               "or name other truth files in monitor.accuracy_truth")
        except Exception as exc:
            self._failed[f"{name}@{version}"] = started_ms
            self.last_error = exc.one_line() if isinstance(exc, CamcountError) else repr(exc)
            raise
        rows = accuracy_rows(report, started_ms, str(uuid.uuid4()))
        self.store.write_accuracy(rows)
        summary = rows[-1]
        if self.metrics is not None:
            self.metrics.set_accuracy(name, version, {m: summary[m] for m in ("precision", "recall",
                                                                              "count_accuracy")}, started_ms)
        log.info("accuracy of %s@%s on %d labelled line(s): precision %.3f recall %.3f count accuracy %.3f",
                 name, version, len(rows) - 1, summary["precision"], summary["recall"], summary["count_accuracy"])
        self.last_error = None
        return rows

    def poll(self) -> None:
        """Start an evaluation in the background when one is due and none is running."""
        if self.interval_ms <= 0 or (self._thread is not None and self._thread.is_alive()):
            return
        due, (name, version) = self.is_due()
        if not due:
            return

        def run() -> None:
            try:
                self.evaluate(name, version)
            except Exception:
                log.exception("accuracy evaluation of %s@%s failed; retried later", name, version)

        self._thread = threading.Thread(target=run, name="accuracy-evaluation", daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
