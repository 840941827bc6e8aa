"""The monitor's ClickHouse path in process (ClickHouse 18.16 of the session stack): references of each mode, a
window whose events cannot be published, a restart in the middle of an episode, the box signals read from the
per-box columns, and the accuracy schedule.

Frames are written straight into ``inference_log`` with patterns of detections and confidences that repeat
exactly, so a window either matches its reference exactly or clearly does not."""

from __future__ import annotations

import itertools
import time

import pytest

from camcount.monitor import AccuracySchedule, DriftMonitor, EventsNotDelivered, MonitorMetrics, accuracy_rows
from foundation.settings import Settings
from monitoring.diagnosis import Key
from monitoring.drift import log_area
from monitoring.reference import WEEK_MS, Period, window_of
from sinks.clickhouse import INFERENCE_BOX_COLUMNS, INFERENCE_COLUMNS
from sinks.drift_store import DriftStore, utc

pytestmark = pytest.mark.integration

WINDOW_MS = 60_000
NORMAL = ([8, 9, 10, 11, 12], [0.52, 0.55, 0.58])
DARK = ([8, 9, 10, 11, 12], [0.40, 0.42, 0.44])
BLANK = ([0], [0.0])
PEOPLE = ([4, 5, 6], [0.52, 0.55, 0.58], [0.004, 0.01, 0.02, 0.05], ["person", "person", "person", "car"])
ZOOMED_OUT = ([4, 5, 6], [0.52, 0.55, 0.58], [0.001, 0.0025, 0.005, 0.0125], ["person", "person", "person", "car"])


def frames(client, camera: str, version: str, start_ms: int, seconds: int, pattern, fps: int = 5) -> None:
    counts, confidences = (itertools.cycle(p) for p in pattern)
    rows = []
    for i in range(seconds * fps):
        ts = start_ms + i * 1000 // fps
        n = next(counts)
        rows.append((camera, ts, utc(ts), ts, "m", version, "", "", "ok", n, next(confidences) if n else 0.0, 9.0,
                     40.0, 0))
    client.execute(f"INSERT INTO inference_log ({', '.join(INFERENCE_COLUMNS)}) VALUES", rows)


def boxed_frames(client, camera: str, version: str, start_ms: int, seconds: int, pattern, fps: int = 5) -> None:
    """Frames with their boxes recorded one by one: ``pattern`` = (counts, mean confidences, box area ratios, box
    classes), each cycled (the boxes' own confidences are the frame's mean)."""
    counts, confidences, areas, classes = (itertools.cycle(p) for p in pattern)
    rows = []
    for i in range(seconds * fps):
        ts = start_ms + i * 1000 // fps
        n, confidence = next(counts), next(confidences)
        rows.append((camera, ts, utc(ts), ts, "m", version, "", "", "ok", n, confidence, 9.0, 40.0, 0,
                     [next(classes) for _ in range(n)], [confidence] * n, [next(areas) for _ in range(n)]))
    client.execute(f"INSERT INTO inference_log ({', '.join((*INFERENCE_COLUMNS, *INFERENCE_BOX_COLUMNS))}) VALUES",
                   rows)


def monitor_settings(base: Settings, **monitor) -> Settings:
    values = {"window_s": 60, "reference_s": 120, "min_frames": 100, "persistence_windows": 2, "lateness_s": 0.0,
              "backfill_s": 24 * 3600, **monitor}
    return base.model_copy(update={"monitor": base.monitor.model_copy(update=values)})


@pytest.fixture
def db(isolated_settings, clickhouse_client):
    settings = isolated_settings()
    client = clickhouse_client(settings)
    return settings, client, DriftStore(client)


def statuses(outcomes) -> list[list[tuple[str, str, str, bool]]]:
    return [[(k.key.camera, k.key.version, k.comparison.status, k.comparison.drifted) for k in o.keys]
            for o in outcomes]


def test_the_automatic_pinned_reference_is_each_camera_and_versions_first_frames(db):
    settings, client, store = db
    t0 = window_of(int(time.time() * 1000), WINDOW_MS).start_ms - 10 * WINDOW_MS
    frames(client, "x", "1", t0, 5 * 60, NORMAL)  # reference = minutes 0-1, then 3 quiet minutes
    frames(client, "x", "2", t0 + 2 * WINDOW_MS, 3 * 60, DARK)  # a new version: its own first two minutes
    published: list[dict] = []
    monitor = DriftMonitor(monitor_settings(settings), store, published.extend)
    outcomes = [monitor.evaluate(Period(t0 + i * WINDOW_MS, t0 + (i + 1) * WINDOW_MS), t0 + 20 * WINDOW_MS)
                for i in range(5)]

    assert statuses(outcomes) == [
        [("x", "1", "reference-period", False)],
        [("x", "1", "reference-period", False)],
        [("x", "1", "judged", False), ("x", "2", "reference-period", False)],
        [("x", "1", "judged", False), ("x", "2", "reference-period", False)],
        [("x", "1", "judged", False), ("x", "2", "judged", False)],  # version 2 against its own pinned start
    ]
    assert outcomes[2].keys[0].reference == Period(t0, t0 + 2 * WINDOW_MS)
    assert outcomes[2].keys[0].comparison.scores and all(s.value < 1e-9 for s in outcomes[2].keys[0].comparison.scores)
    assert published == []


def test_the_same_hour_last_week_is_the_cameras_frames_whatever_version_served_them(db):
    settings, client, store = db
    now = int(time.time() * 1000)
    window = window_of(now, WINDOW_MS)
    window = Period(window.start_ms - 2 * WINDOW_MS, window.start_ms - WINDOW_MS)
    hour = window.start_ms // 3_600_000 * 3_600_000
    frames(client, "x", "1", hour - WEEK_MS, 5 * 60, NORMAL)  # last week, version 1
    frames(client, "x", "2", window.start_ms, 60, BLANK)  # now, version 2: no boxes at all
    monitor = DriftMonitor(monitor_settings(settings, reference="same-hour-last-week"), store)
    (key,) = monitor.evaluate(window, now).keys

    assert key.reference == Period(hour - WEEK_MS, hour - WEEK_MS + 3_600_000)
    assert (key.comparison.status, key.comparison.drifted_signals) == ("judged", ("detections",))
    assert (key.diagnosis.problem, key.diagnosis.cause) == ("camera", "no-detections")  # a blank camera, always


def test_a_window_whose_events_were_not_acknowledged_is_done_again_and_nothing_is_written_twice(db):
    settings, client, store = db
    t0 = window_of(int(time.time() * 1000), WINDOW_MS).start_ms - 10 * WINDOW_MS
    for camera in ("a", "b"):
        frames(client, camera, "1", t0, 2 * 60, NORMAL)
    frames(client, "a", "1", t0 + 2 * WINDOW_MS, 3 * 60, NORMAL)
    frames(client, "b", "1", t0 + 2 * WINDOW_MS, 3 * 60, DARK)
    published: list[dict] = []
    broker_down = [True]

    def publish(events: list[dict]) -> None:
        if broker_down[0]:
            raise EventsNotDelivered("broker away")
        published.extend(events)

    cfg = monitor_settings(settings, reference_start=utc(t0), reference_end=utc(t0 + 2 * WINDOW_MS))
    metrics = MonitorMetrics()
    monitor = DriftMonitor(cfg, store, publish, metrics)
    now = t0 + 5 * WINDOW_MS + 1
    with pytest.raises(EventsNotDelivered):
        monitor.evaluate_due(now)  # windows 0-2 written; window 3 completes b's episode: its event fails
    assert monitor.last_window_ms == t0 + 2 * WINDOW_MS
    assert client.execute("SELECT count() FROM drift_windows WHERE window_start = %(w)s",
                          {"w": utc(t0 + 3 * WINDOW_MS)}) == [(0,)]
    broker_down[0] = False
    monitor.evaluate_due(now)

    assert [(e["camera_id"], e["problem"], e["cause"]) for e in published] == [("b", "CAMERA", "lower-confidence")]
    assert published[0]["window_start_ms"] == t0 + 3 * WINDOW_MS and published[0]["since_ms"] == t0 + 2 * WINDOW_MS
    rows = client.execute("SELECT camera_id, toUnixTimestamp(window_start) * 1000, drifted, active, onset, event_id "
                          "FROM drift_windows FINAL WHERE camera_id = 'b' ORDER BY window_start")
    assert [r[2:5] for r in rows] == [(0, 0, 0), (0, 0, 0), (1, 0, 0), (1, 1, 1), (1, 1, 0)]
    assert rows[3][5] == published[0]["event_id"]
    assert metrics.registry.get_sample_value("camcount_drift_active", {"camera": "b", "model": "m",
                                                                       "version": "1"}) == 1

    # --- a restart in the middle of the episode: the state comes back from drift_windows, no second onset
    frames(client, "b", "1", t0 + 5 * WINDOW_MS, 2 * 60, DARK)
    again: list[dict] = []
    restarted = DriftMonitor(cfg, store, again.extend)
    restarted.resume()
    assert restarted.last_window_ms == t0 + 4 * WINDOW_MS
    assert [w.start_ms for w in restarted.due(t0 + 7 * WINDOW_MS + 1)] == [t0 + 5 * WINDOW_MS, t0 + 6 * WINDOW_MS]
    outcomes = restarted.evaluate_due(t0 + 7 * WINDOW_MS + 1)
    assert [k.transition for o in outcomes for k in o.keys] == ["active", "active"] and again == []


def test_the_box_signals_are_read_once_per_frame_from_frames_whose_boxes_were_recorded(db):
    settings, client, store = db
    t0 = window_of(int(time.time() * 1000), WINDOW_MS).start_ms - 10 * WINDOW_MS
    boxed_frames(client, "x", "1", t0, 60, PEOPLE)
    boxed_frames(client, "x", "1", t0, 10, PEOPLE)  # a replay of the first 10 s: FINAL keeps one copy
    frames(client, "x", "1", t0 + 1, 20, NORMAL)  # frames written without per-box data (other frame_seq)
    sample = store.samples(Period(t0, t0 + WINDOW_MS))[Key("x", "m", "1")]

    assert (sample.frames, sample.box_frames) == (400, 300)  # 300 boxed + 100 without boxes recorded
    boxes = 100 * (4 + 5 + 6)  # 300 frames cycling 4, 5, 6 boxes
    assert sample.class_mix.names == ("car", "person")
    assert sample.class_mix.counts.tolist() == [boxes / 4, boxes * 3 / 4]
    assert sample.box_area.total == boxes
    assert sample.box_area.values.tolist() == sorted(log_area(a) for a in PEOPLE[2])


def test_a_zoomed_out_camera_drifts_on_box_area_and_its_window_row_holds_the_box_means(db):
    settings, client, store = db
    t0 = window_of(int(time.time() * 1000), WINDOW_MS).start_ms - 10 * WINDOW_MS
    boxed_frames(client, "x", "1", t0, 2 * 60, PEOPLE)
    boxed_frames(client, "x", "1", t0 + 2 * WINDOW_MS, 60, ZOOMED_OUT)  # a quarter of the area, same mix
    monitor = DriftMonitor(monitor_settings(settings), store)
    (key,) = monitor.evaluate(Period(t0 + 2 * WINDOW_MS, t0 + 3 * WINDOW_MS), t0 + 10 * WINDOW_MS).keys

    assert key.comparison.drifted_signals == ("box_area",) and key.diagnosis.cause == "smaller-boxes"
    row = client.execute("SELECT mean_box_area, reference_mean_box_area, dominant_class, class_share, "
                         "reference_class_share FROM drift_windows FINAL")[0]
    assert row[0] == pytest.approx(row[1] / 4, rel=0.05) and row[2:] == ("person", 0.75, 0.75)
    signals = client.execute("SELECT signal, groupArray(measure) FROM drift_scores FINAL GROUP BY signal "
                             "ORDER BY signal")
    all_three = ["jensen_shannon", "psi", "wasserstein"]
    assert [(signal, sorted(measures)) for signal, measures in signals] == [
        ("box_area", all_three), ("class_mix", ["jensen_shannon", "psi"]), ("confidence", all_three),
        ("detections", all_three)]


def test_the_accuracy_schedule_evaluates_a_version_without_a_recent_evaluation(db, model_registry):
    settings, client, store = db
    settings = settings.model_copy(update={"model": settings.model.model_copy(update={"registry": model_registry})})
    metrics = MonitorMetrics()
    now = [time.time()]
    schedule = AccuracySchedule(settings, store, metrics, clock=lambda: now[0])
    name, version = schedule.served()
    assert schedule.is_due() == (True, (name, version))  # never evaluated
    report = {"model": f"{name}@{version}", "summary": {"precision": 0.9, "recall": 0.8}, "footages": [
        {"video": "clip", "frames": 100, "seconds": 3.0, "lines": [
            {"truth": "t.json", "line": "L1", "matched": 4, "precision": 0.9, "recall": 0.8,
             "misses": [{}], "false_positives": []}]}]}
    rows = accuracy_rows(report, int(now[0] * 1000), "e1")
    assert [(r["line"], r["labelled"], r["emitted"], r["count_accuracy"]) for r in rows] == [
        ("L1", 5, 4, 0.8), ("", 5, 4, 0.8)]
    store.write_accuracy(rows)

    assert schedule.is_due() == (False, (name, version))
    text = metrics.registry.get_sample_value("camcount_model_accuracy_ratio",
                                             {"model": name, "version": version, "metric": "recall"})
    assert text == 0.8  # exported from the stored evaluation, e.g. after a restart
    now[0] += settings.monitor.accuracy_interval_s + 1
    assert schedule.is_due() == (True, (name, version))
