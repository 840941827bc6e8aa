"""``camcount monitor`` on the real stack: the real default model's outputs on vtest.avi (cached, see
``footage_outputs``) go as detections records through the broker and the ClickHouse sink into ``inference_log``;
the monitor process scores them, publishes model-health events on the broker, writes ClickHouse rows, serves its
gauges, and evaluates the production version on a labelled clip.

Timeline (2 frames/s per camera, 5-minute windows, drift persists after 3 drifted windows), data placed in the
past so the monitor evaluates it on its first poll:

- a pinned reference period of an hour: cameras a, b, c, unmodified footage, yolov4-tiny@1.0.0;
- windows 1-3: all unmodified; windows 4-6: camera c's footage darkened (a quarter of the light);
- windows 7-9: every camera served by a version "9.9.9" that is the same model at a confidence threshold of 0.5.

Expected: one event for camera c (a camera problem) at window 6, one per camera for 9.9.9 (a model problem) at
window 9, none for a and b under 1.0.0; a restart publishes nothing again.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from confluent_kafka import Producer

from benchmarks import GROUND_TRUTH_DIR
from foundation.kafka import producer_config
from foundation.settings import Settings
from monitoring.reference import window_of
from schemas import DETECTIONS, MODEL_HEALTH
from sinks.kafka_sink import ClickHouseSink
from tests.monitoring.footage_outputs import FootageOutputs, footage_outputs, production_settings, stream_frames
from tests.pipeline import CamcountProcesses, consume_records, footage_path
from tests.services import free_ports

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FPS = 2
WINDOW_S = 300
WINDOW_MS = WINDOW_S * 1000
REFERENCE_WINDOWS = 12  # an hour: a shorter reference is itself too noisy (a 15-minute one doubles false alarms)
CAMERAS = ("cam-a", "cam-b", "cam-c")
CANDIDATE_VERSION = "9.9.9"
CLIP_FRAMES = 130  # the labelled clip: vtest.avi's first 130 frames, with L1's crossings in them


def frame_records(outputs: FootageOutputs, camera: str, version: str, start_ms: int, frames: int, threshold: float,
                  rng: np.random.Generator, first_seq: int) -> list[dict]:
    """Detections records of ``frames`` frames of a camera at FPS from ``start_ms``, boxes from the model's cached
    outputs (at or above ``threshold``; square boxes of each box's area, which is all the box signals read of
    them; no class names, so the classes are named by their ids)."""
    width, height = 768, 576
    order = np.argsort(outputs.frame, kind="stable")
    frame_of, confidence = outputs.frame[order], outputs.confidence[order]
    class_id, area = outputs.class_id[order], outputs.area_ratio[order]
    bounds = np.searchsorted(frame_of, np.arange(outputs.frames + 1))
    records = []
    for i, index in enumerate(stream_frames(outputs, frames, FPS, rng)):
        box = slice(bounds[index], bounds[index + 1])
        kept = confidence[box] >= threshold
        side = np.sqrt(area[box][kept] * width * height)
        xyxy = np.stack([np.zeros_like(side), np.zeros_like(side), side, side], axis=1).reshape(-1)
        capture = start_ms + int(i * 1000 / FPS)
        records.append({
            "camera_id": camera, "frame_seq": first_seq + i, "capture_ts_ms": capture, "width": width,
            "height": height, "status": "OK", "model_name": "yolov4-tiny", "model_version": version,
            "variant": "", "experiment": "", "xyxy": xyxy.astype(float).tolist(),
            "confidence": confidence[box][kept].astype(float).tolist(),
            "class_id": class_id[box][kept].astype(int).tolist(), "class_names": [], "infer_ms": 30.0,
            "inferred_ts_ms": capture + 40, "source_partition": -1, "source_offset": -1, "fallback": False,
        })
    return records


def timeline(clean: FootageOutputs, dark: FootageOutputs, t0: int) -> list[dict]:
    rng = np.random.default_rng(14)
    records: list[dict] = []
    for number, camera in enumerate(CAMERAS):
        seq = number * 1_000_000
        records += frame_records(clean, camera, "1.0.0", t0, REFERENCE_WINDOWS * WINDOW_S * FPS, 0.1, rng, seq)
        for window in range(1, 10):
            start = t0 + (REFERENCE_WINDOWS + window - 1) * WINDOW_MS
            seq += 10_000
            if window >= 7:
                records += frame_records(clean, camera, CANDIDATE_VERSION, start, WINDOW_S * FPS, 0.5, rng, seq)
            elif window >= 4 and camera == "cam-c":
                records += frame_records(dark, camera, "1.0.0", start, WINDOW_S * FPS, 0.1, rng, seq)
            else:
                records += frame_records(clean, camera, "1.0.0", start, WINDOW_S * FPS, 0.1, rng, seq)
    return records


def publish_and_sink(settings: Settings, records: list[dict], client) -> float:
    """Produce ``records`` to the detections topic and run the ClickHouse sink until they are all in
    inference_log; returns the seconds it took."""
    started = time.monotonic()
    producer = Producer(producer_config(settings))
    topic = settings.kafka.detections_topic
    for i, record in enumerate(records):
        producer.produce(topic, DETECTIONS.encode(record), record["camera_id"].encode(), headers=DETECTIONS.headers())
        if i % 5000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0
    sink = ClickHouseSink(settings, group_id="monitor-test-sink")
    thread = threading.Thread(target=sink.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and thread.is_alive():
            if client.execute("SELECT count() FROM inference_log")[0][0] >= len(records):
                break
            time.sleep(0.5)
    finally:
        sink.stop()
        thread.join(30)
    assert client.execute("SELECT count() FROM inference_log FINAL")[0][0] == len(records)
    return time.monotonic() - started


def labelled_clip(root: Path) -> Path:
    """vtest.avi's first CLIP_FRAMES frames as a folder of JPEGs, and a truth file with L1's crossings in them."""
    clip = root / "data" / "vtest_head"
    clip.mkdir(parents=True)
    capture = cv2.VideoCapture(str(footage_path()))
    for i in range(CLIP_FRAMES):
        ok, image = capture.read()
        assert ok
        cv2.imwrite(str(clip / f"{i:04d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    capture.release()
    truth = json.loads((GROUND_TRUTH_DIR / "vtest_L1.json").read_text())
    truth["video"], truth["frames"] = "vtest_head", CLIP_FRAMES
    for line in truth["lines"].values():
        line["crossings"] = [c for c in line["crossings"] if c["frame"] < CLIP_FRAMES - 10]
        line.pop("totals", None)
    path = root / "truth" / "vtest_head_L1.json"
    path.parent.mkdir()
    path.write_text(json.dumps(truth))
    return path


def metric(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_the_monitor_publishes_one_event_per_persisted_drift_and_tells_camera_from_model(
        isolated_settings, clickhouse_client, model_registry, tmp_path):
    models = production_settings()
    clean, dark = footage_outputs(models, "none"), footage_outputs(models, "dark")
    assert clean.model == "yolov4-tiny@1.0.0"
    base = isolated_settings(partitions=2)
    client = clickhouse_client(base)
    end = window_of(int(time.time() * 1000), WINDOW_MS).start_ms - WINDOW_MS
    t0 = end - (REFERENCE_WINDOWS + 9) * WINDOW_MS
    records = timeline(clean, dark, t0)
    seconds = publish_and_sink(base, records, client)
    print(f"\n{len(records)} detections records through the broker and the sink in {seconds:.1f} s")

    truth = labelled_clip(tmp_path)
    port = free_ports(1)[0]
    utc = lambda ms: datetime.fromtimestamp(ms / 1000, tz=timezone.utc).replace(tzinfo=None)  # noqa: E731
    settings = base.model_copy(update={
        "home": tmp_path / "home",
        "model": base.model.model_copy(update={"registry": model_registry, "providers": ["CPUExecutionProvider"]}),
        "monitor": base.monitor.model_copy(update={
            "window_s": WINDOW_S, "reference": "pinned", "reference_start": utc(t0),
            "reference_end": utc(t0 + REFERENCE_WINDOWS * WINDOW_MS), "lateness_s": 0.0,
            "backfill_s": (REFERENCE_WINDOWS + 12) * WINDOW_S, "poll_s": 1.0, "metrics_port": port,
            "accuracy_truth": [str(truth)], "accuracy_data_dir": str(tmp_path / "data")}),
    })
    processes = CamcountProcesses(settings, tmp_path)
    processes.start("monitor", "monitor")
    try:
        events = consume_records(settings, settings.kafka.model_health_topic, lambda rs: len(rs) >= 4,
                                 timeout_s=90, decode=MODEL_HEALTH.decode)
        assert len(events) == 4, processes.log("monitor")[-3000:]
        text = ""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the accuracy evaluation runs the real model on the clip
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            if metric(text, "camcount_model_accuracy_ratio", metric="recall") is not None:
                break
            time.sleep(1)
        document = httpx.get(f"http://127.0.0.1:{port}/drift", timeout=5).json()
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code
    finally:
        processes.stop_all()
    log_text = processes.log("monitor")

    # --- the events: one camera problem, one model problem per camera of the candidate version
    by_key = {(e["camera_id"], e["model_version"]): e for e in events}
    assert set(by_key) == {("cam-c", "1.0.0"), *((c, CANDIDATE_VERSION) for c in CAMERAS)}, log_text[-3000:]
    camera_event = by_key[("cam-c", "1.0.0")]
    assert (camera_event["problem"], camera_event["cameras"], camera_event["retrain_suggested"]) == (
        "CAMERA", ["cam-c"], False)
    # within the configured persistence: at the latest in window 6, the third dark one (a chance drift of window 3
    # under the unmodified footage would bring it forward)
    assert t0 + (REFERENCE_WINDOWS + 3) * WINDOW_MS <= camera_event["window_start_ms"] \
        <= t0 + (REFERENCE_WINDOWS + 5) * WINDOW_MS
    assert camera_event["cause"] in {"lower-confidence", "fewer-detections", "more-detections"}
    assert "confidence" in camera_event["signals"]
    for camera in CAMERAS:
        event = by_key[(camera, CANDIDATE_VERSION)]
        assert (event["problem"], event["cameras"], event["retrain_suggested"]) == ("MODEL", list(CAMERAS), True)
        assert event["window_start_ms"] == t0 + (REFERENCE_WINDOWS + 8) * WINDOW_MS
        assert event["cause"] == "fewer-detections"
    assert all(e["_headers"]["camcount-schema"] == b"model-health" for e in events)

    # --- ClickHouse: every window's verdict and scores; the onsets carry the events' ids
    rows = client.execute("SELECT camera_id, model_version, toUnixTimestamp(window_start) * 1000, status, drifted, "
                          "active, onset, problem, event_id FROM drift_windows FINAL ORDER BY window_start, camera_id")
    assert len(rows) == 3 * (REFERENCE_WINDOWS + 9)
    assert {r[3] for r in rows if r[2] < t0 + REFERENCE_WINDOWS * WINDOW_MS} == {"reference-period"}
    assert {r[3] for r in rows if r[2] >= t0 + REFERENCE_WINDOWS * WINDOW_MS} == {"judged"}
    drifted = {key: "".join("D" if r[4] else "." for r in rows if (r[0], r[1]) == key and r[3] == "judged")
               for key in {(r[0], r[1]) for r in rows}}
    print(f"drifted windows (D) per camera and version: {dict(sorted(drifted.items()))}")
    assert drifted[("cam-c", "1.0.0")][3:] == "DDD", "every darkened window drifted"
    assert all(drifted[(c, CANDIDATE_VERSION)] == "DDD" for c in CAMERAS)
    onsets = {(r[0], r[1]): r[8] for r in rows if r[6]}
    assert onsets == {key: event["event_id"] for key, event in by_key.items()}
    quiet = [r for r in rows if r[0] in ("cam-a", "cam-b") and r[1] == "1.0.0"]
    assert not any(r[5] for r in quiet), "the unmodified cameras never persisted a drift"
    false_alarms = sum(r[4] for r in quiet if r[3] == "judged")
    print(f"unmodified cameras: {false_alarms} of {sum(r[3] == 'judged' for r in quiet)} judged windows drifted")
    scores = client.execute("SELECT count(), countIf(above) FROM drift_scores FINAL")[0]
    assert scores[0] == 3 * 9 * (3 * 3 + 2)  # judged windows x (3 signals x 3 measures + class_mix's 2)

    assert ready == 200 and document["last_window_start_ms"] >= end - WINDOW_MS
    assert "cam-c yolov4-tiny@1.0.0" in document["active"] and document["accuracy_error"] is None

    # --- Prometheus: drift gauges and the accuracy of the production version after its scheduled evaluation
    assert metric(text, "camcount_drift_active", camera="cam-c", version="1.0.0") == 1.0
    assert metric(text, "camcount_drift_active", camera="cam-a", version="1.0.0") == 0.0
    assert metric(text, "camcount_drift_active", camera="cam-a", version=CANDIDATE_VERSION) == 1.0
    assert metric(text, "camcount_drift_score", camera="cam-c", version="1.0.0", signal="confidence",
                  measure="jensen_shannon") > 0.1
    assert metric(text, "camcount_model_health_events_total", problem="model") == 3.0
    for name in ("precision", "recall", "count_accuracy"):
        value = metric(text, "camcount_model_accuracy_ratio", model="yolov4-tiny", version="1.0.0", metric=name)
        assert value is not None and 0.0 <= value <= 1.0, (name, log_text[-3000:])
    accuracy = client.execute("SELECT line, labelled, precision, recall, count_accuracy FROM model_accuracy FINAL "
                              "WHERE model_version = '1.0.0' ORDER BY line")
    assert [r[0] for r in accuracy] == ["", "L1"] and accuracy[0][1] == 3
    print(f"accuracy of yolov4-tiny@1.0.0 on the labelled clip: {accuracy[0][2:]}")

    # --- a restart publishes nothing again, and the one-shot report shows the same verdicts without writing
    again = processes.run("monitor", "--once", timeout=120)
    assert again.returncode == 0, again.stderr[-3000:]
    time.sleep(1)
    assert len(consume_records(settings, settings.kafka.model_health_topic, lambda rs: False, timeout_s=4,
                               decode=MODEL_HEALTH.decode)) == 4
    until = datetime.fromtimestamp((end + WINDOW_MS) / 1000, tz=timezone.utc).isoformat()
    report = processes.run("monitor", "report", "--until", until, "--hours", "1", "--json", timeout=120)
    assert report.returncode == 0, report.stderr[-3000:]
    reported = json.loads(report.stdout)
    assert {(r["camera"], r["version"]) for r in reported if r["transition"] == "onset"} == set(by_key)
    assert len(client.execute("SELECT 1 FROM drift_windows FINAL")) == len(rows)
    assert re.search(r"drift persists on camera cam-c under yolov4-tiny@1.0.0 \(camera problem", log_text)
    shutil.rmtree(tmp_path / "data", ignore_errors=True)
