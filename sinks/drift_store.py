"""Adapter: what ``camcount monitor`` reads from and writes to ClickHouse.

Reads the outputs in ``inference_log`` as distributions (``monitoring.drift.WindowSample``): one row per distinct
value, so a window of any length costs a few dozen rows (a few hundred for the box area). The box signals
(``box_area``, ``class_mix``) come from the per-box columns (``infra/clickhouse/061_output_aggregates.sql``) of the
window's frames, under FINAL like the per-frame ones, so a replayed frame counts once; not from the hourly
aggregates, which are hourly (windows are minutes) and count replays again. Only frames whose boxes were recorded
(``length(box_classes) = detections``) feed them; ``box_frames`` counts the frames with boxes among those.
Writes ``drift_scores``, ``drift_windows`` and ``model_accuracy`` (``infra/clickhouse/060_model_monitoring.sql``,
``drift_windows``' box means from ``061``).

Queries are written for ClickHouse 18.16: FINAL, no CTEs or window functions. Times go in as epoch seconds and
milliseconds (``toDateTime(<seconds>)``), never as strings, so the server's time zone plays no part.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from clickhouse_driver import Client

from monitoring.diagnosis import Key
from monitoring.distances import Categories, Distribution
from monitoring.drift import AREA_DECIMALS, AREA_FLOOR, WindowSample
from monitoring.reference import Period

log = logging.getLogger(__name__)

CONFIDENCE_DECIMALS = 3
"""Mean confidence is grouped to 0.001: a thousandth of the range, far below any threshold's resolution."""

_RANGE = ("capture_time >= toDateTime(%(start_s)s) AND capture_time <= toDateTime(%(end_s)s) "
          "AND capture_ts_ms >= %(start)s AND capture_ts_ms < %(end)s AND status = 'ok'")

SCORE_COLUMNS = ("window_start", "window_seconds", "camera_id", "model_name", "model_version", "signal", "measure",
                 "score", "threshold", "above", "evaluated_ms")
WINDOW_COLUMNS = ("window_start", "window_seconds", "camera_id", "model_name", "model_version", "status", "drifted",
                  "drifted_signals", "active", "onset", "problem", "cause", "event_id", "frames", "reference_frames",
                  "reference_mode", "reference_start", "reference_end", "empty_share", "mean_detections",
                  "mean_confidence", "reference_mean_detections", "reference_mean_confidence", "mean_box_area",
                  "reference_mean_box_area", "dominant_class", "class_share", "reference_class_share", "evaluated_ms")
ACCURACY_COLUMNS = ("evaluated_at", "evaluated_ms", "evaluation_id", "model_name", "model_version", "video",
                    "truth_file", "line", "precision", "recall", "count_accuracy", "labelled", "emitted", "matched",
                    "frames", "seconds")


def utc(ms: int) -> datetime:
    """A naive UTC datetime (what clickhouse-driver sends unchanged) of epoch milliseconds, to the second."""
    return datetime.fromtimestamp(ms // 1000, tz=timezone.utc).replace(tzinfo=None)


def _range(period: Period) -> dict[str, int]:
    return {"start": period.start_ms, "end": period.end_ms, "start_s": period.start_ms // 1000,
            "end_s": period.end_ms // 1000}


@dataclass(frozen=True)
class WindowHistory:
    """A key's earlier window as ``drift_windows`` holds it."""

    window_ms: int
    judged: bool
    drifted: bool
    active: bool


@dataclass(frozen=True)
class AccuracySummary:
    model_name: str
    model_version: str
    evaluated_ms: int
    precision: float
    recall: float
    count_accuracy: float


class DriftStore:
    def __init__(self, client: Client) -> None:
        self.client = client

    # --- inference_log -------------------------------------------------------------------------------------------
    def samples(self, period: Period, key: Key | None = None) -> dict[Key, WindowSample]:
        """Every camera and model version with frames in ``period`` (or only ``key``)."""
        where, params = _RANGE, _range(period)
        if key is not None:
            where += " AND camera_id = %(camera)s AND model_name = %(model)s AND model_version = %(version)s"
            params.update(camera=key.camera, model=key.model, version=key.version)
        group = "camera_id, model_name, model_version"
        return {Key(*k): v for k, v in self._samples(group, where, params, 3).items()}

    def camera_samples(self, period: Period, cameras: Sequence[str] | None = None) -> dict[str, WindowSample]:
        """Per camera, whatever model version inferred its frames in ``period``."""
        where, params = _RANGE, _range(period)
        if cameras is not None:
            where += " AND camera_id IN %(cameras)s"
            params["cameras"] = tuple(cameras)
        return {k[0]: v for k, v in self._samples("camera_id", where, params, 1).items()}

    def _samples(self, group: str, where: str, params: dict[str, Any], width: int) -> dict[tuple, WindowSample]:
        detections = self._weighted(
            f"SELECT {group}, detections, count() FROM inference_log FINAL WHERE {where} GROUP BY {group}, detections",
            params, width)
        confidence = self._weighted(
            f"SELECT {group}, round(mean_confidence, {CONFIDENCE_DECIMALS}) AS confidence, count() "
            f"FROM inference_log FINAL WHERE {where} AND detections > 0 GROUP BY {group}, confidence", params, width)
        boxed = f"{where} AND detections > 0 AND length(box_classes) = detections"
        box_frames = {tuple(row[:width]): int(row[width]) for row in self.client.execute(
            f"SELECT {group}, count() FROM inference_log FINAL WHERE {boxed} GROUP BY {group}", params)}
        areas = self._weighted(
            f"SELECT {group}, round(log10(greatest(area_ratio, {AREA_FLOOR})), {AREA_DECIMALS}) AS area, count() "
            f"FROM inference_log FINAL ARRAY JOIN box_area_ratios AS area_ratio WHERE {boxed} GROUP BY {group}, area",
            params, width)
        classes = self._weighted(
            f"SELECT {group}, class_name, count() FROM inference_log FINAL ARRAY JOIN box_classes AS class_name "
            f"WHERE {boxed} GROUP BY {group}, class_name", params, width)
        return {key: WindowSample(Distribution.of(*detections[key]), Distribution.of(*confidence.get(key, ([], []))),
                                  Distribution.of(*areas.get(key, ([], []))),
                                  Categories.of(*classes.get(key, ([], []))), box_frames.get(key, 0))
                for key in detections}

    def _weighted(self, sql: str, params: dict[str, Any], width: int) -> dict[tuple, tuple[list, list[float]]]:
        """Per key (the first ``width`` columns): the values and counts of rows ``key..., value, count``."""
        found: dict[tuple, tuple[list, list[float]]] = defaultdict(lambda: ([], []))
        for row in self.client.execute(sql, params):
            values, counts = found[tuple(row[:width])]
            values.append(row[width])
            counts.append(row[width + 1])
        return found

    def first_frames(self, keys: Iterable[Key]) -> dict[Key, int]:
        """When each camera and model version's first frame (inferred ``ok``) was captured, epoch ms."""
        found: dict[Key, int] = {}
        for key in keys:
            rows = self.client.execute(
                "SELECT min(capture_ts_ms), count() FROM inference_log WHERE camera_id = %(camera)s "
                "AND model_name = %(model)s AND model_version = %(version)s AND status = 'ok'",
                {"camera": key.camera, "model": key.model, "version": key.version})
            if rows and rows[0][1]:
                found[key] = int(rows[0][0])
        return found

    # --- drift_windows / drift_scores ----------------------------------------------------------------------------
    def last_window_ms(self, window_s: int) -> int | None:
        """Start of the newest window of this length evaluated so far."""
        rows = self.client.execute("SELECT max(window_start), count() FROM drift_windows "
                                   "WHERE window_seconds = %(w)s", {"w": window_s})
        if not rows or not rows[0][1]:
            return None
        return int(rows[0][0].replace(tzinfo=timezone.utc).timestamp() * 1000)

    def history(self, since_ms: int, window_s: int) -> dict[Key, list[WindowHistory]]:
        """Every key's windows of this length from ``since_ms`` on, oldest first."""
        rows = self.client.execute(
            "SELECT camera_id, model_name, model_version, toUnixTimestamp(window_start), status = 'judged', "
            "drifted, active FROM drift_windows FINAL WHERE window_start >= toDateTime(%(since)s) "
            "AND window_seconds = %(w)s ORDER BY camera_id, model_name, model_version, window_start",
            {"since": since_ms // 1000, "w": window_s})
        history: dict[Key, list[WindowHistory]] = defaultdict(list)
        for camera, model, version, start_s, judged, drifted, active in rows:
            history[Key(camera, model, version)].append(
                WindowHistory(int(start_s) * 1000, bool(judged), bool(drifted), bool(active)))
        return dict(history)

    def windows(self, since_ms: int, until_ms: int) -> list[dict[str, Any]]:
        """The ``drift_windows`` rows of windows starting in [since_ms, until_ms), as dicts, oldest first."""
        rows = self.client.execute(
            f"SELECT {', '.join(WINDOW_COLUMNS)} FROM drift_windows FINAL WHERE window_start >= toDateTime(%(since)s) "
            "AND window_start < toDateTime(%(until)s) ORDER BY window_start, camera_id, model_name, model_version",
            {"since": since_ms // 1000, "until": until_ms // 1000})
        return [dict(zip(WINDOW_COLUMNS, row)) for row in rows]

    def write(self, windows: list[dict[str, Any]], scores: list[dict[str, Any]]) -> None:
        """Insert window verdicts and their scores (dicts keyed by column)."""
        if scores:
            self.client.execute(f"INSERT INTO drift_scores ({', '.join(SCORE_COLUMNS)}) VALUES",
                                [tuple(s[c] for c in SCORE_COLUMNS) for s in scores])
        if windows:
            self.client.execute(f"INSERT INTO drift_windows ({', '.join(WINDOW_COLUMNS)}) VALUES",
                                [tuple(w[c] for c in WINDOW_COLUMNS) for w in windows])

    # --- model_accuracy ------------------------------------------------------------------------------------------
    def write_accuracy(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.client.execute(f"INSERT INTO model_accuracy ({', '.join(ACCURACY_COLUMNS)}) VALUES",
                                [tuple(r[c] for c in ACCURACY_COLUMNS) for r in rows])

    def latest_accuracy(self, model_name: str, model_version: str) -> AccuracySummary | None:
        """The newest evaluation summary (``line = ''``) of a model version."""
        rows = self.client.execute(
            "SELECT evaluated_ms, precision, recall, count_accuracy FROM model_accuracy FINAL "
            "WHERE model_name = %(model)s AND model_version = %(version)s AND line = '' "
            "ORDER BY evaluated_ms DESC LIMIT 1", {"model": model_name, "version": model_version})
        if not rows:
            return None
        evaluated_ms, precision, recall, count_accuracy = rows[0]
        return AccuracySummary(model_name, model_version, int(evaluated_ms), precision, recall, count_accuracy)

    def close(self) -> None:
        self.client.disconnect()
