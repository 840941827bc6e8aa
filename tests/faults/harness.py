"""Machinery of the whole-pipeline fault-injection suite (tests/faults).

One real pipeline (``camcount infer``, ``camcount count`` with its ClickHouse sink, or ``count --no-sink`` beside a
standalone ``camcount sink``) runs on a namespace of the private ``outage_stack``, whose broker, ClickHouse and
Redis a test may pause or kill. Each test streams a short slice of vtest.avi (:data:`CLIP_START` ..
:data:`CLIP_START` + :data:`CLIP_FRAMES`) as a camera of its own, at a live-ish rate, injects its fault once the
counting app has counted frame :data:`FAULT_AT_FRAME` (an outage) or :data:`KILL_AT_FRAME` (a kill -9) of it, and
then waits until

- every frame of the camera has exactly one inference-log row in ClickHouse,
- the camera's crossing totals in ClickHouse (``crossing_events FINAL`` and the replay-safe ``crossings_daily``
  view alike) equal the offline count of the same clip (``camcount.offline.analyze``), and
- they still do :data:`SETTLE_S` later (nothing else was on its way),

or until its timeout; the test then asserts equality, so a lost or doubled crossing fails it.

The slice holds three line crossings of L1 (one "out", two "in"; ground truth frames 104, 159 and 180) and takes
about 5 s to publish. The clip file is written once per test module as MJPG, so the stream (``camcount ingest``)
and the offline count (``camcount.offline.analyze``) read exactly the same pixels.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from foundation.clickhouse import clickhouse_client
from foundation.kafka import consumer_config, producer_config
from foundation.provision import provision
from foundation.settings import Settings
from schemas import CROSSING, DETECTIONS, headers_dict
from sinks.redis_live import read_camera
from tests.pipeline import REPO, CamcountProcesses, footage_path
from tests.services import free_ports

log = logging.getLogger(__name__)

CLIP_START = 95
CLIP_FRAMES = 100
"""vtest.avi frames 95..194: crossings of L1 at about 103 (out), 159 and 180 (in) with the default camera config."""
FPS = 20.0
"""Twice the footage's own rate: live-ish pacing, so a fault lands while frames still arrive."""
FAULT_AT_FRAME = 30
"""An outage starts once the counting app has counted this frame of the test's camera (mid-stream); it lasts past
the clip's two later crossings."""
KILL_AT_FRAME = 66
"""A process is killed once the counting app has counted this frame, just after the clip's second crossing (frame
64): that crossing is then likely still in some stage's uncommitted tail, which the restart replays."""
SETTLE_S = 1.5
"""Totals must stay equal this long after they first match (the sink flushes every second)."""
CPU = "CPUExecutionProvider"

Totals = Counter  # (line, direction, class) -> crossings


# --- footage and the offline count -----------------------------------------------------------------------------------
def write_clip(path: Path, start: int = CLIP_START, frames: int = CLIP_FRAMES) -> Path:
    """Frames ``start`` .. ``start + frames - 1`` of vtest.avi as an MJPG AVI at the footage's own 10 fps."""
    capture = cv2.VideoCapture(str(footage_path()))
    writer = None
    written = 0
    try:
        for index in range(start + frames):
            ok, image = capture.read()
            if not ok:
                raise RuntimeError(f"{footage_path()} ends at frame {index}, before {start + frames}")
            if index < start:
                continue
            if writer is None:
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0,
                                         (image.shape[1], image.shape[0]))
                writer.set(cv2.VIDEOWRITER_PROP_QUALITY, 100)
            writer.write(image)
            written += 1
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    assert written == frames and path.stat().st_size > 0, f"could not write the clip {path}"
    return path


def offline_totals(settings: Settings, clip: Path, camera_id: str, frames: int = CLIP_FRAMES) -> Totals:
    """What ``camcount analyze`` counts on ``clip`` (``frames`` long) for ``camera_id``'s config, with the
    settings' model on CPU."""
    from camcount.offline import analyze
    from counting.config import load_camera_configs
    from models.loading import load_detector
    from producers.sources import FrameSource

    detector = load_detector(settings, max_batch=settings.inference.max_batch)
    config = load_camera_configs(REPO / settings.counting.cameras).for_camera(camera_id)
    result = analyze(FrameSource(str(clip)), config, detector, batch_size=settings.inference.max_batch)
    assert result.frames == frames, result.frames
    return Counter((c.line, c.direction, c.class_name) for c in result.crossings)


# --- settings ------------------------------------------------------------------------------------------------------
def fault_settings(base: Settings, home: Path, registry: str, partitions: int = 2) -> Settings:
    """A provisioned namespace of ``base`` (the outage stack's settings) for the pipeline's processes: the test
    registry's model on CPU, a home of its own, the counting app's web port free, no worker metrics port."""
    own = base.namespaced(uuid.uuid4().hex[:8], partitions)
    provision(own, progress=lambda _: None)
    return own.model_copy(update={
        "home": home,
        "model": own.model.model_copy(update={"registry": registry, "providers": [CPU]}),
        "inference": own.inference.model_copy(update={"metrics_port": 0}),
        "counting": own.counting.model_copy(update={"web_port": free_ports(1)[0]}),
    })


# --- what ClickHouse and Redis hold ---------------------------------------------------------------------------------
@dataclass
class Outcome:
    """What the stores hold for one camera once the pipeline settled (or the wait timed out)."""

    camera: str
    events: Totals = field(default_factory=Counter)
    """From ``crossing_events FINAL``."""
    rollup: Totals = field(default_factory=Counter)
    """From the replay-safe ``crossings_daily`` view (uniqExact of event ids)."""
    inference_rows: dict[int, int] = field(default_factory=dict)
    """frame_seq -> rows in ``inference_log FINAL``."""
    seconds: float = 0.0
    """From the end of the fault (or the start of the stream) until the totals settled."""

    def every_frame_inferred_once(self) -> bool:
        return self.inference_rows == {seq: 1 for seq in range(CLIP_FRAMES)}


def read_outcome(settings: Settings, camera: str) -> Outcome | None:
    """The camera's rows now; None while ClickHouse does not answer (paused or stopped)."""
    try:
        client = clickhouse_client(settings)
    except Exception:  # noqa: BLE001 - away: "not yet"
        return None
    try:
        params = {"camera": camera}
        events = client.execute(
            "SELECT line, toString(direction), class_name, count() FROM crossing_events FINAL "
            "WHERE camera_id = %(camera)s GROUP BY line, direction, class_name", params)
        rollup = client.execute(
            "SELECT line, toString(direction), class_name, sum(crossings) FROM crossings_daily "
            "WHERE camera_id = %(camera)s GROUP BY line, direction, class_name", params)
        rows = client.execute("SELECT frame_seq, count() FROM inference_log FINAL WHERE camera_id = %(camera)s "
                              "GROUP BY frame_seq", params)
    except Exception:  # noqa: BLE001 - away: "not yet"
        return None
    finally:
        client.disconnect()
    return Outcome(camera, Counter({(line, d, cls): n for line, d, cls, n in events}),
                   Counter({(line, d, cls): n for line, d, cls, n in rollup}), {int(s): n for s, n in rows})


def longest_capture_gap_ms(settings: Settings, camera: str) -> int:
    """The longest wait between two consecutive frames of ``camera`` as ingest stamped them (a paced file source
    stamps each frame with the moment it publishes it), from the inference log."""
    client = clickhouse_client(settings)
    try:
        stamps = [ts for (ts,) in client.execute(
            "SELECT capture_ts_ms FROM inference_log FINAL WHERE camera_id = %(camera)s ORDER BY frame_seq",
            {"camera": camera})]
    finally:
        client.disconnect()
    return max((b - a for a, b in zip(stamps, stamps[1:])), default=0)


def redis_line_totals(settings: Settings, camera: str, lines: Sequence[str] = ("L1",)) -> Totals:
    """Today's live per-line totals the sink keeps in Redis (``sinks.redis_live``), per (line, direction, class)."""
    client = redis.Redis.from_url(settings.redis_url(), socket_timeout=2)
    totals: Totals = Counter()
    try:
        for line in lines:
            pattern = f"{settings.redis.key_prefix}:line:{camera}:{line}:*"
            for key in client.scan_iter(match=pattern):
                for name, value in client.hgetall(key).items():
                    direction, _, class_name = name.decode().partition(":")
                    if class_name:
                        totals[(line, direction, class_name)] += int(value)
    finally:
        client.close()
    return +totals


def counted_up_to(settings: Settings, camera: str) -> int:
    """The last frame seq the counting app reported to Redis for ``camera`` (-1: none yet or Redis away)."""
    client = redis.Redis.from_url(settings.redis_url(), socket_timeout=1, socket_connect_timeout=1)
    try:
        return read_camera(client, settings.redis.key_prefix, camera).get("last_frame_seq", -1)
    except redis.RedisError:
        return -1
    finally:
        client.close()


def publish_detections(settings: Settings, camera: str, frames: int, pace_s: float) -> None:
    """``frames`` detections records of ``camera`` (nobody in view, seqs 0..frames-1), one per ``pace_s``, as an
    inference worker would publish them."""
    producer = Producer(producer_config(settings))
    now = int(time.time() * 1000)
    for seq in range(frames):
        record = {"camera_id": camera, "frame_seq": seq, "capture_ts_ms": now + seq * 50, "width": 768,
                  "height": 576, "status": "OK", "model_name": "yolov4-tiny", "model_version": "1.0.0",
                  "variant": "", "experiment": "", "xyxy": [], "confidence": [], "class_id": [],
                  "class_names": ["person"], "infer_ms": 1.0, "inferred_ts_ms": now, "source_partition": 0,
                  "source_offset": seq, "fallback": False}
        producer.produce(settings.kafka.detections_topic, DETECTIONS.encode(record), camera.encode(),
                         headers=DETECTIONS.headers())
        producer.poll(0)
        time.sleep(pace_s)
    assert producer.flush(10) == 0


def read_keyed(settings: Settings, topic: str, key: bytes, count: int, timeout_s: float = 30) -> list[dict]:
    """Records of ``topic`` whose key is ``key``, from the beginning, until ``count`` of them or the timeout:
    ``{"value": bytes, "headers": {name: bytes}}`` each."""
    consumer = Consumer(consumer_config(settings, f"faults-reader-{uuid.uuid4().hex[:8]}"))
    # assigned, not subscribed: no group join to wait for (Tansu answers JoinGroup after half the session timeout)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(settings.kafka.partitions)])
    found: list[dict] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and len(found) < count:
            for message in consumer.consume(500, timeout=0.5):
                if message.error() is None and message.key() == key:
                    found.append({"value": message.value(), "headers": headers_dict(message.headers()),
                                  "partition": message.partition(), "offset": message.offset()})
    finally:
        consumer.close()
    return found


# --- the pipeline ----------------------------------------------------------------------------------------------------
class FaultPipeline:
    """The camcount processes of the suite, by role (``infer``, ``count``, ``sink``), restartable one at a time."""

    def __init__(self, stack, settings: Settings, workdir: Path, clip: Path) -> None:
        self.stack = stack
        self.settings = settings
        self.workdir = workdir
        self.clip = clip
        self.processes = CamcountProcesses(settings, workdir)
        self.roles: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, list[Path]] = {}
        self._started = Counter()

    # processes
    def start(self, role: str, *args: str, prefix: Sequence[str] = (), settings: Settings | None = None,
              preexec_fn: Callable[[], None] | None = None) -> subprocess.Popen:
        """Start ``camcount ARGS`` as ``role`` (replacing a stopped one), optionally under a wrapper command."""
        assert role not in self.roles or self.roles[role].poll() is not None, f"{role} is already running"
        self._started[role] += 1
        name = f"{role}-{self._started[role]}"
        path = self.workdir / f"{name}.log"
        self.logs.setdefault(role, []).append(path)
        env = (CamcountProcesses(settings, self.workdir) if settings is not None else self.processes).env()
        with open(path, "wb") as out:
            process = subprocess.Popen([*prefix, sys.executable, "-m", "camcount.cli", *args], stdout=out,
                                       stderr=subprocess.STDOUT, env=env, cwd=REPO, preexec_fn=preexec_fn)
        self.roles[role] = process
        return process

    def kill(self, role: str) -> None:
        """SIGKILL, as a crash or an OOM kill would."""
        process = self.roles.pop(role)
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def stop(self, role: str) -> int:
        """SIGTERM and wait, as an orchestrator's rolling restart does; returns the exit code."""
        process = self.roles.pop(role)
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError(f"{role} ignored SIGTERM for 30 s:\n{self.log(role)}") from None

    def use_topology(self, standalone_sink: bool) -> None:
        """``count`` with its in-process sink, or ``count --no-sink`` beside ``camcount sink``; starts what is
        missing (an inference worker included) and stops what does not belong."""
        if "infer" not in self.roles:
            self.start("infer", "infer")
        wanted = ("count", "--no-sink") if standalone_sink else ("count",)
        count = self.roles.get("count")
        if count is not None and tuple(count.args[count.args.index("camcount.cli") + 1:]) != wanted:
            self.stop("count")
        if not standalone_sink and "sink" in self.roles:
            self.stop("sink")
        if "count" not in self.roles:
            self.start("count", *wanted)
        if standalone_sink and "sink" not in self.roles:
            self.start("sink", "sink")

    def dead(self) -> dict[str, int]:
        """Pipeline roles (not ingest, which ends with its clip) whose process has exited, with their exit codes;
        an empty dict: all still running."""
        return {role: p.returncode for role, p in self.roles.items()
                if not role.startswith("ingest-") and p.poll() is not None}

    def current_log(self, role: str) -> str:
        """The whole log of ``role``'s latest process."""
        return self.logs[role][-1].read_text(errors="replace")

    def log(self, role: str) -> str:
        """The tail of every log ``role`` wrote, for failure messages."""
        paths = self.logs.get(role, [])
        return "\n".join(f"--- {p.name} ---\n{p.read_text(errors='replace')[-4000:]}" for p in paths)

    def all_logs(self) -> str:
        return "\n".join(self.log(role) for role in self.logs)

    def close(self) -> None:
        for role in list(self.roles):
            if self.roles[role].poll() is None:
                self.roles[role].send_signal(signal.SIGTERM)
        for process in self.roles.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.roles.clear()

    # streams
    def stream(self, camera: str, fps: float = FPS) -> subprocess.Popen:
        """Publish the clip as ``camera``, frame seqs 0..CLIP_FRAMES-1, paced at ``fps``."""
        return self.start(f"ingest-{camera}", "ingest", "--camera-id", camera, "--source", str(self.clip),
                          "--fps", str(fps), "--first-seq", "0")

    def wait_counted(self, camera: str, frame: int = FAULT_AT_FRAME, timeout_s: float = 90) -> None:
        """Until the counting app has counted ``frame`` of ``camera`` (the moment to inject a fault)."""
        deadline = time.monotonic() + timeout_s
        while counted_up_to(self.settings, camera) < frame:
            if time.monotonic() > deadline:
                raise AssertionError(f"{camera} not counted up to frame {frame} within {timeout_s} s; "
                                     f"exited: {self.dead()}\n{self.all_logs()}")
            time.sleep(0.1)

    def counting_metrics(self, camera: str) -> dict[str, float]:
        """The running ``count``'s per-camera counters (frames taken, late frames ignored) from its /metrics."""
        url = f"http://127.0.0.1:{self.settings.counting.web_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                body = response.read().decode()
        except OSError as exc:
            return {"unreachable": repr(exc)}  # type: ignore[dict-item]
        wanted = (f'camcount_count_frames_total{{camera="{camera}"}} ',
                  f'camcount_count_late_frames_total{{camera="{camera}"}} ')
        return {line.split("{")[0]: float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
                if line.startswith(wanted)}

    def wait_frames_counted(self, camera: str, frames: int, timeout_s: float = 60) -> None:
        """Until the running ``count`` has taken ``frames`` records of ``camera`` (its /metrics; no Redis needed)."""
        url = f"http://127.0.0.1:{self.settings.counting.web_port}/metrics"
        sample = f'camcount_count_frames_total{{camera="{camera}"}} '
        deadline = time.monotonic() + timeout_s
        counted = -1.0
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    body = response.read().decode()
                counted = next((float(line[len(sample):]) for line in body.splitlines() if line.startswith(sample)),
                               0.0)
            except OSError:
                pass
            if counted >= frames:
                return
            time.sleep(0.2)
        raise AssertionError(f"count took {counted} of {frames} frames of {camera} in {timeout_s} s:\n"
                             f"{self.log('count')}")

    def wait_ingested(self, camera: str, timeout_s: float = 60) -> None:
        process = self.roles.pop(f"ingest-{camera}")
        try:
            code = process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            raise AssertionError(f"ingest of {camera} still running after {timeout_s} s:\n"
                                 f"{self.log(f'ingest-{camera}')}") from None
        assert code == 0, f"ingest of {camera} exited {code}:\n{self.log(f'ingest-{camera}')}"

    def settle(self, camera: str, expected: Totals, timeout_s: float = 90) -> Outcome:
        """Wait until ClickHouse holds every frame of ``camera`` once and its totals equal ``expected`` for
        SETTLE_S, or until the timeout; returns what the stores hold then (the test asserts on it)."""
        started = time.monotonic()
        deadline = started + timeout_s
        matched_at: float | None = None
        outcome = Outcome(camera)
        while time.monotonic() < deadline:
            now = read_outcome(self.settings, camera)
            if now is not None:
                outcome = now
                done = (now.every_frame_inferred_once() and now.events == expected and now.rollup == expected)
                if not done:
                    matched_at = None
                elif matched_at is None:
                    matched_at = time.monotonic()
                elif time.monotonic() - matched_at >= SETTLE_S:
                    break
            time.sleep(0.25)
        outcome.seconds = (matched_at or time.monotonic()) - started
        return outcome

    def explain(self, outcome: Outcome, expected: Totals) -> str:
        missing = sorted(set(range(CLIP_FRAMES)) - set(outcome.inference_rows))
        doubled = {seq: n for seq, n in outcome.inference_rows.items() if n != 1}
        on_kafka = []
        for record in read_keyed(self.settings, self.settings.kafka.crossings_topic, outcome.camera.encode(), 1000,
                                 timeout_s=3):
            try:
                crossing = CROSSING.decode(record["value"], record["headers"])
            except Exception as exc:  # noqa: BLE001 - a diagnostic
                crossing = {"undecodable": repr(exc)}
            on_kafka.append((record["partition"], record["offset"], crossing.get("frame_seq"),
                             crossing.get("direction"), crossing.get("track_id"), crossing.get("event_id")))
        stored = []
        try:
            client = clickhouse_client(self.settings)
            try:
                stored = client.execute("SELECT frame_seq, toString(direction), track_id, event_id "
                                        "FROM crossing_events WHERE camera_id = %(c)s ORDER BY frame_seq",
                                        {"c": outcome.camera})
            finally:
                client.disconnect()
        except Exception as exc:  # noqa: BLE001 - a diagnostic
            stored = [repr(exc)]
        detections = read_keyed(self.settings, self.settings.kafka.detections_topic, outcome.camera.encode(), 10_000,
                                timeout_s=3)
        return (f"crossings on Kafka (partition, offset, frame, direction, track, event id): {on_kafka}\n"
                f"detections on Kafka: {len(detections)} records, offsets "
                f"{sorted({(d['partition'], d['offset']) for d in detections})[:3]}..; counting app: "
                f"{self.counting_metrics(outcome.camera)}; last frame counted (Redis): "
                f"{counted_up_to(self.settings, outcome.camera)}\n"
                f"crossing_events rows (no FINAL): {stored}\n"
                f"camera {outcome.camera}: offline {dict(expected)}, crossing_events FINAL {dict(outcome.events)}, "
                f"crossings_daily {dict(outcome.rollup)}; frames without an inference-log row: {missing[:20]}"
                f"{'...' if len(missing) > 20 else ''}; rows not unique: {doubled}; exited: {self.dead()}\n"
                f"{self.all_logs()}")


def pid_of(stack, service: str) -> int:
    """The pid of one of the outage stack's local services (``kafka``, ``clickhouse``, ``redis``)."""
    pid = next(s.pid for s in stack.status() if s.name == service)
    assert pid is not None, f"{service} is not running"
    return pid


def full_disk_wrapper(directory: Path, size: str = "64k") -> tuple[list[str], Callable[[], None] | None, str]:
    """How to run a command whose view of ``directory`` is a full disk: ``(prefix, preexec_fn, how)``.

    Preferred: a private mount namespace (``unshare``; as root, or through a user namespace otherwise) in which
    ``directory`` is a ``size`` tmpfs, so writing a file larger than that fails with ENOSPC exactly as on a full
    disk, and nothing outside the process sees the mount. Where namespaces are not allowed, the process instead
    gets a file-size limit (RLIMIT_FSIZE), under which the same writes fail with EFBIG.
    """
    directory.mkdir(parents=True, exist_ok=True)
    flags = ["--mount"] if os.geteuid() == 0 else ["--user", "--map-root-user", "--mount"]
    probe = subprocess.run(["unshare", *flags, "sh", "-c", f"mount -t tmpfs -o size={size} camcount-full {directory}"],
                           capture_output=True, check=False)
    if probe.returncode == 0:
        script = f'mount -t tmpfs -o size={size} camcount-full "{directory}" && exec "$@"'
        return ["unshare", *flags, "sh", "-c", script, "full-disk"], None, "tmpfs"

    def limit_file_size() -> None:  # pragma: no cover - runs in the child
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    log.warning("no private mount namespace here (%s); the full disk is a 1 MiB file-size limit instead",
                probe.stderr.decode(errors="replace").strip())
    return [], limit_file_size, "rlimit"
