"""``camcount bench count-latency``: how soon after capture a crossing is visible in ClickHouse and in Redis.

Runs the real processes on the local stack, in a namespace of their own: one inference worker and one counting app
(with its in-process ClickHouse sink) as subprocesses, and one camera replaying the footage paced at ``load`` times
the rate one worker sustains at batch 1 (measured in this process first). Meanwhile the benchmark reads the
``crossings`` topic (each crossing's event id and capture time) and, every ``poll_ms``, asks ClickHouse
(``crossing_events``) and Redis (the live totals' per-event marks) which of the crossings they hold. A crossing's
time to count is when it was first seen there minus its capture time; polling makes each figure late by up to one
poll interval, so they are upper bounds.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import redis
import yaml
from confluent_kafka import Consumer

from camcount.stack import LocalStack
from foundation.clickhouse import clickhouse_client
from foundation.kafka import consumer_config
from foundation.provision import provision
from foundation.settings import Settings
from models.benchmark import single_frame_ms
from models.loading import load_detector
from producers.sources import sample_frames
from schemas import CROSSING, headers_dict
from sinks.redis_live import event_key


@dataclass(frozen=True)
class CountLatency:
    load: float
    fps: float
    batch1_ms: float
    crossings: int
    clickhouse_p50_ms: float
    clickhouse_p95_ms: float
    clickhouse_max_ms: float
    redis_p50_ms: float
    redis_p95_ms: float
    redis_max_ms: float
    poll_ms: int

    def as_dict(self) -> dict:
        return asdict(self)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Crossings(threading.Thread):
    """Reads the crossings topic: event id -> capture time (ms)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.captured: dict[str, int] = {}
        self._settings = settings
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        consumer = Consumer(consumer_config(self._settings, f"bench-count-{uuid.uuid4().hex[:8]}"))
        consumer.subscribe([self._settings.kafka.crossings_topic])
        try:
            while not self._stopping.is_set():
                for message in consumer.consume(100, timeout=0.1):
                    if message.error() is None:
                        record = CROSSING.decode(message.value(), headers_dict(message.headers()))
                        with self._lock:
                            self.captured[record["event_id"]] = record["capture_ts_ms"]
        finally:
            consumer.close()

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.captured)

    def stop(self) -> None:
        self._stopping.set()
        self.join(10)


def bench_count_latency(settings: Settings, footage: Path, frames: int, load: float = 0.5,
                        poll_ms: int = 100) -> CountLatency:
    LocalStack(settings).up()
    settings = settings.namespaced(f"bench-count-{uuid.uuid4().hex[:6]}")
    settings = settings.model_copy(update={  # beside any running worker or counting app: no fixed ports
        "inference": settings.inference.model_copy(update={"metrics_port": 0}),
        "counting": settings.counting.model_copy(update={"web_port": _free_port()}),
    })
    provision(settings, progress=lambda _: None)
    batch1_ms = single_frame_ms(load_detector(settings, max_batch=1), sample_frames(footage, 12))
    fps = load * 1000.0 / batch1_ms
    workdir = settings.layout().logs / "bench-count-latency"
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "settings.yaml"
    document = settings.model_dump(mode="json")
    document["home"] = str(Path(settings.home).resolve())
    config.write_text(yaml.safe_dump(document))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CAMCOUNT_") and k not in ("KAFKA_BOOTSTRAP_SERVERS", "CLICKHOUSE_URL", "REDIS_URL")}
    env["CAMCOUNT_CONFIG"] = str(config)
    logs = ExitStack()

    def spawn(*argv: str) -> subprocess.Popen:
        log_file = logs.enter_context(open(workdir / f"{argv[0]}.log", "wb"))
        return subprocess.Popen([sys.executable, "-m", "camcount.cli", *argv], env=env, stdout=log_file,
                                stderr=subprocess.STDOUT)

    processes = [spawn("infer"), spawn("count")]
    crossings = _Crossings(settings)
    crossings.start()
    clickhouse = clickhouse_client(settings)
    live = redis.Redis.from_url(settings.redis_url())
    seen_clickhouse: dict[str, float] = {}
    seen_redis: dict[str, float] = {}
    try:
        time.sleep(8)  # both processes join their groups (the local broker answers JoinGroup after a delay)
        ingest = spawn("ingest", "--camera-id", "bench-cam", "--source", str(footage), "--fps", f"{fps:.3f}",
                       "--max-frames", str(frames))
        quiet_since = None
        while True:
            now_ms = time.time() * 1000
            captured = crossings.snapshot()
            pending = [e for e in captured if e not in seen_clickhouse]
            if pending:
                rows = clickhouse.execute("SELECT event_id FROM crossing_events WHERE event_id IN %(ids)s",
                                          {"ids": tuple(pending)})
                seen_clickhouse.update({event_id: now_ms for (event_id,) in rows})
            pending = [e for e in captured if e not in seen_redis]
            if pending:
                with live.pipeline(transaction=False) as pipe:
                    for event_id in pending:
                        pipe.exists(event_key(settings.redis.key_prefix, event_id))
                    found = pipe.execute()
                seen_redis.update({e: now_ms for e, hit in zip(pending, found) if hit})
            done = ingest.poll() is not None and len(seen_clickhouse) == len(seen_redis) == len(captured)
            if done:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since > 5:
                    break
            else:
                quiet_since = None
            if any(p.poll() is not None for p in processes):
                raise RuntimeError(f"a pipeline process exited: see the logs in {workdir}")
            time.sleep(poll_ms / 1000)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(30)
        logs.close()
        crossings.stop()
    captured = crossings.snapshot()

    def figures(seen: dict[str, float]) -> list[float]:
        return sorted(seen[e] - captured[e] for e in seen if e in captured)

    in_clickhouse, in_redis = figures(seen_clickhouse), figures(seen_redis)

    def pct(values: list[float], q: float) -> float:
        return round(float(np.percentile(values, q)), 1) if values else float("nan")

    return CountLatency(load=load, fps=round(fps, 2), batch1_ms=round(batch1_ms, 1), crossings=len(captured),
                        clickhouse_p50_ms=pct(in_clickhouse, 50), clickhouse_p95_ms=pct(in_clickhouse, 95),
                        clickhouse_max_ms=pct(in_clickhouse, 100), redis_p50_ms=pct(in_redis, 50),
                        redis_p95_ms=pct(in_redis, 95), redis_max_ms=pct(in_redis, 100), poll_ms=poll_ms)
