"""``camcount demo``: the whole pipeline on the sample footage, end to end, on the local stack.

Starts the stack, makes sure the default model is registered, starts an inference worker and the counting app,
replays vtest.avi as several cameras, waits until every frame is counted, prints the per-minute counts read
back from ClickHouse, and stops everything it started.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

import cv2
import redis

from camcount.commands.argtypes import camera_ids, positive_float
from foundation.clickhouse import clickhouse_client
from foundation.errors import CamcountError, UsageError
from foundation.settings import Settings
from sinks.redis_live import read_camera


class DemoError(CamcountError, RuntimeError):
    code = "CLI_002"
    detail = "demo-failed"
    pass


def _step(number: int, total: int, text: str) -> None:
    print(f"[{number}/{total}] {text}", flush=True)


def _spawn(args: list[str], log_path: Path) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "wb")
    env = {**os.environ, "CAMCOUNT_CLICKHOUSE__DATABASE": DEMO_DATABASE}
    return subprocess.Popen([sys.executable, "-m", "camcount.cli", *args], stdout=log, stderr=subprocess.STDOUT,
                            env=env)


def _fresh_demo_database(settings: Settings) -> None:
    """Each demo run starts from an empty database of its own, so its tables show this run only."""
    from foundation.clickhouse import apply_clickhouse_ddl, quote_identifier

    clickhouse_client(settings, database="default").execute(
        f"DROP DATABASE IF EXISTS {quote_identifier(DEMO_DATABASE)}")
    apply_clickhouse_ddl(settings.clickhouse_url(), DEMO_DATABASE)


def _stop(process: subprocess.Popen, name: str) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


DEMO_DATABASE = "camcount_demo"
AB_CAMERAS = [f"gate-{i}" for i in range(1, 7)]
AB_FRAMES = 100
# Paced like live cameras: 6 x 2 fps stays within what two CPU cores ingest, infer and count at once, so the
# end-to-end latency the report compares is the pipeline's, not a replay backlog's.
AB_FPS = 2
# The experiment's salt decides which cameras get which variant; this one splits the six demo cameras 3/3.
AB_SALT = "demo-7"
INT8_VERSION = "1.1.0"
# The A/B latency guardrail, from the budget measured by `camcount bench pipeline` (docs/performance.md): ~30 ms
# of broker hops plus queueing at this load, and a frame waits for at most a batch of the other arm and its own.
GUARDRAIL_BASE_MS = 100.0
GUARDRAIL_BATCHES = 4


def run_demo(settings: Settings, footage: Path, cameras: list[str], keep_stack: bool, timeout_s: float,
             experiment: bool = True) -> int:
    from camcount.stack import LocalStack
    from models.default_model import import_default_model

    if not footage.is_file():
        raise UsageError(f"footage {footage} not found: run `make footage` (or pass --footage PATH)")
    frames_per_camera = int(cv2.VideoCapture(str(footage)).get(cv2.CAP_PROP_FRAME_COUNT))
    settings = settings.model_copy(
        update={"clickhouse": settings.clickhouse.model_copy(update={"database": DEMO_DATABASE})})
    total = 8 if experiment else 6
    logs = settings.layout().logs
    stack = LocalStack(settings)
    started = time.monotonic()
    with ExitStack() as cleanup:
        _step(1, total, "starting the local stack (Kafka-protocol broker, ClickHouse, Redis)")
        stack.up(progress=lambda line: print(f"      {line}", flush=True))
        if not keep_stack:
            cleanup.callback(stack.down)
        _fresh_demo_database(settings)
        _step(2, total, f"default model: {import_default_model(settings)}")
        _step(3, total, f"starting the inference worker and the counting app (logs in {logs})")
        workers = {"infer": _spawn(["infer"], logs / "infer.log"), "count": _spawn(["count"], logs / "count.log")}
        for name, process in workers.items():
            cleanup.callback(_stop, process, name)
        _step(4, total, f"replaying {footage.name} ({frames_per_camera} frames) as cameras {', '.join(cameras)}")
        # One explicit first sequence number for every camera, so "counted" below is last_seq - first_seq + 1. It is
        # the time in ms, as ingest's own default, so a rerun on a kept stack is not ignored as a replay.
        first_seq = int(time.time() * 1000)
        ingestors = [
            _spawn(["ingest", "--camera-id", camera, "--source", str(footage), "--fps", "0",
                    "--first-seq", str(first_seq)], logs / f"ingest-{camera}.log")
            for camera in cameras
        ]
        for process, camera in zip(ingestors, cameras):
            cleanup.callback(_stop, process, f"ingest-{camera}")
        _step(5, total, "waiting until every frame is inferred, counted and stored, and each stream's end counted")
        _wait_for_pipeline(settings, cameras, first_seq, frames_per_camera, workers, ingestors, timeout_s)
        _step(6, total, "per-minute counts from ClickHouse (counts_per_minute view)")
        _print_counts(settings)
        if experiment:
            from models.default_model import DEFAULT_MODEL

            _step(7, total, f"A/B experiment: int8 candidate {DEFAULT_MODEL}@{INT8_VERSION} vs fp32 control")
            name = _run_experiment(settings, footage, logs, workers, timeout_s)
            _step(8, total, f"experiment report (camcount ab report {name})")
            _print_report(settings, name)
        print(f"demo finished in {time.monotonic() - started:.0f} s; stopping what it started", flush=True)
    return 0


def _run_experiment(settings: Settings, footage: Path, logs: Path, workers: dict[str, subprocess.Popen],
                    timeout_s: float) -> str:
    """Quantizes the default model (once), runs an fp32-vs-int8 experiment on six cameras and stops it.

    The registration, start and stop are audited like the same CLI commands, as the OS user."""
    from camcount.commands.actor import os_user
    from experiments.config import load_experiment
    from management import experiments as manage_experiments
    from management.models import AuditedModelRegistry
    from models.default_model import DEFAULT_MODEL, DEFAULT_VERSION
    from models.errors import ModelNotFound
    from models.loading import open_model_registry
    from sinks.audit import Actor, AuditLog
    from sinks.experiment_store import ExperimentStore

    audit = AuditLog.for_settings(settings)
    actor = Actor(os_user(), "os-user", "cli", socket.gethostname(), id=os_user())
    registry = open_model_registry(settings)
    try:
        registry.verify(f"{DEFAULT_MODEL}@{INT8_VERSION}")
    except ModelNotFound:
        print(f"      quantizing {DEFAULT_MODEL}@{DEFAULT_VERSION} to int8 (only once)", flush=True)
        from models.quantize import quantize_static_int8
        from producers.sources import sample_frames

        frames = sample_frames(footage, 64)
        quantize_static_int8(AuditedModelRegistry(registry, audit, actor, reason="camcount demo"),
                             f"{DEFAULT_MODEL}@{DEFAULT_VERSION}", INT8_VERSION, frames[0::2], frames[1::2])
    name = f"demo-int8-{time.strftime('%H%M%S')}"
    guardrail_ms, batch1_ms = latency_guardrail_ms(settings, f"{DEFAULT_MODEL}@{DEFAULT_VERSION}", footage)
    print(f"      latency guardrail: p95 capture -> detections <= {guardrail_ms:.0f} ms ({GUARDRAIL_BASE_MS:.0f} ms + "
          f"{GUARDRAIL_BATCHES} x the control's {batch1_ms:.0f} ms batch-1 inference, measured now)", flush=True)
    experiment = load_experiment({
        "name": name, "salt": AB_SALT, "min_samples_per_variant": 250,
        "guardrails": {"max_p95_latency_ms": guardrail_ms},
        "variants": [{"name": "fp32", "model": f"{DEFAULT_MODEL}@{DEFAULT_VERSION}"},
                     {"name": "int8", "model": f"{DEFAULT_MODEL}@{INT8_VERSION}"}],
    })
    store = ExperimentStore.for_settings(settings)
    manage_experiments.start(store, registry, audit, actor, experiment)
    print(f"      started {name}: cameras {', '.join(AB_CAMERAS)}, {AB_FRAMES} frames each at {AB_FPS} fps, "
          f"split by a sticky hash of the camera id", flush=True)
    _wait_for_variant_models(settings, [INT8_VERSION], timeout_s=60)
    ingestors = [_spawn(["ingest", "--camera-id", camera, "--source", str(footage), "--fps", str(AB_FPS),
                         "--max-frames", str(AB_FRAMES)], logs / f"ingest-{camera}.log") for camera in AB_CAMERAS]
    client = clickhouse_client(settings)
    goal = len(AB_CAMERAS) * AB_FRAMES
    deadline = time.monotonic() + timeout_s
    try:
        inferred = -1
        while time.monotonic() < deadline:
            for process_name, process in workers.items():
                if process.poll() is not None:
                    raise DemoError(f"the {process_name} process exited: see {logs / (process_name + '.log')}")
            now = client.execute("SELECT count() FROM inference_log FINAL WHERE experiment = %(e)s", {"e": name})
            if now[0][0] // 100 != inferred // 100 or now[0][0] >= goal:
                print(f"      inferred {now[0][0]}/{goal}", flush=True)
            inferred = now[0][0]
            if inferred >= goal:
                break
            time.sleep(1)
        else:
            raise DemoError(f"experiment frames not all inferred within {timeout_s:.0f} s: see {logs}")
    finally:
        for process in ingestors:
            _stop(process, "ingest")
        manage_experiments.stop(store, audit, actor, name, "demo finished")
    return name


def _print_report(settings: Settings, name: str) -> None:
    from experiments.rendering import render_html, render_table
    from sinks.experiment_samples import experiment_report
    from sinks.experiment_store import ExperimentStore

    report = experiment_report(clickhouse_client(settings), ExperimentStore.for_settings(settings).get(name))
    print(render_table(report))
    html = settings.layout().reports / f"{name}.html"
    html.parent.mkdir(parents=True, exist_ok=True)
    html.write_text(render_html(report))
    print(f"      charts: {html}", flush=True)


def _wait_for_variant_models(settings: Settings, versions: list[str], timeout_s: float) -> None:
    """Wait until the worker has loaded the experiment's models (it preloads a running experiment's), so the first
    frames are not measured waiting for them; read from the worker's ``/models`` endpoint."""
    url = f"http://127.0.0.1:{settings.inference.metrics_port}/models"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                loaded = {model["version"] for model in json.load(response)["loaded"]}
            if set(versions) <= loaded:
                return
        except (OSError, ValueError, KeyError):
            pass  # the worker is still starting
        time.sleep(0.5)
    print(f"      the worker has not loaded {', '.join(versions)} after {timeout_s:.0f} s; starting anyway", flush=True)


def latency_guardrail_ms(settings: Settings, reference: str, footage: Path) -> tuple[float, float]:
    """(guardrail, batch-1 ms): the demo's p95 latency guardrail, from the latency budget measured on this machine.

    At the demo's load a frame pays two broker hops and a little queueing (``GUARDRAIL_BASE_MS``), then waits for
    at most the batch already running, of either arm, and its own (``GUARDRAIL_BATCHES`` single-frame inferences of
    the slower, control model). Measured now, so a busy machine raises the bar as much as it slows the models.
    """
    from models.benchmark import single_frame_ms
    from models.loading import load_detector
    from producers.sources import sample_frames

    batch1_ms = single_frame_ms(load_detector(settings, reference, max_batch=1), sample_frames(footage, 12))
    return GUARDRAIL_BASE_MS + GUARDRAIL_BATCHES * batch1_ms, batch1_ms


def frames_counted(last_seq: int, first_seq: int, frames_per_camera: int) -> int:
    """How many of a camera's frames, numbered from ``first_seq``, counting has seen, given the last it saw."""
    return max(0, min(last_seq - first_seq + 1, frames_per_camera))


def _wait_for_pipeline(settings: Settings, cameras: list[str], first_seq: int, frames_per_camera: int,
                       workers: dict[str, subprocess.Popen], ingestors: list[subprocess.Popen],
                       timeout_s: float) -> None:
    client = clickhouse_client(settings)
    live = redis.Redis.from_url(settings.redis_url())
    deadline = time.monotonic() + timeout_s
    last_line = ""
    stable_since: float | None = None
    last_stored = -1
    while time.monotonic() < deadline:
        for name, process in workers.items():
            if process.poll() is not None:
                raise DemoError(f"the {name} process exited with code {process.returncode}: "
                                f"see {settings.layout().logs / (name + '.log')}")
        for process in ingestors:
            if process.poll() not in (None, 0):
                raise DemoError(f"an ingestor failed (exit {process.returncode}): see {settings.layout().logs}")
        inferred = client.execute("SELECT count() FROM inference_log FINAL")[0][0]
        states = [read_camera(live, settings.redis.key_prefix, c) for c in cameras]
        counted = sum(frames_counted(state.get("last_frame_seq", -1), first_seq, frames_per_camera)
                      for state in states)
        ended = sum(state.get("stream_ended", 0) for state in states)  # each camera's end marker counted
        stored = client.execute("SELECT count() FROM crossing_events FINAL")[0][0]
        goal = frames_per_camera * len(cameras)
        line = (f"      inferred {inferred}/{goal}  counted {counted}/{goal}  streams ended {ended}/{len(cameras)}"
                f"  crossings stored {stored}")
        if line != last_line:
            print(line, flush=True)
            last_line = line
        if inferred >= goal and counted >= goal and ended == len(cameras):
            # The sink flushes every second; wait until the stored crossings stop changing.
            if stored != last_stored:
                stable_since, last_stored = time.monotonic(), stored
            elif stable_since is not None and time.monotonic() - stable_since > 3:
                return
        time.sleep(1)
    raise DemoError(f"pipeline did not finish within {timeout_s:.0f} s: see the logs in {settings.layout().logs}")


def _print_counts(settings: Settings) -> None:
    client = clickhouse_client(settings)
    rows = client.execute(
        "SELECT minute, camera_id, line, class_name, direction, model_version, sum(crossings) "
        "FROM counts_per_minute GROUP BY minute, camera_id, line, class_name, direction, model_version "
        "ORDER BY minute, camera_id, line, class_name, direction"
    )
    header = ("minute (UTC)", "camera", "line", "class", "dir", "model", "crossings")
    table = [header] + [(m.strftime("%Y-%m-%d %H:%M"), c, l, k, d, v, str(n)) for m, c, l, k, d, v, n in rows]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for index, row in enumerate(table):
        print("  " + "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)))
        if index == 0:
            print("  " + "  ".join("-" * width for width in widths))
    totals = client.execute(
        "SELECT camera_id, line, direction, count() FROM crossing_events FINAL "
        "GROUP BY camera_id, line, direction ORDER BY camera_id, line, direction"
    )
    print("  totals: " + ", ".join(f"{c}/{l} {d}={n}" for c, l, d, n in totals))


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    footage = Path(args.footage) if args.footage else settings.layout().sample_footage
    try:
        return run_demo(settings, footage, args.cameras, args.keep_stack, args.timeout,
                        experiment=not args.no_experiment)
    except DemoError as exc:
        print(f"camcount demo: error: {exc}", file=sys.stderr)
        return 1


def register_parser(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="run the whole pipeline on the sample footage and print the counts")
    demo.add_argument("--footage", help="video file (default: <home>/data/vtest.avi)")
    demo.add_argument("--cameras", type=camera_ids, default="cam-1,cam-2",
                      help="comma-separated camera ids to replay it as")
    demo.add_argument("--keep-stack", action="store_true", help="leave the stack running afterwards")
    demo.add_argument("--no-experiment", action="store_true", help="skip the fp32-vs-int8 A/B experiment")
    demo.add_argument("--timeout", type=positive_float, default=900, help="seconds to wait for the pipeline")
    demo.set_defaults(handler=cmd_demo)
