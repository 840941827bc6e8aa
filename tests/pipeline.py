"""Helpers for tests that run camcount's real processes (ingest, infer, count) against the test stack."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import Consumer

from foundation.kafka import consumer_config
from foundation.settings import Settings
from schemas import DETECTIONS, headers_dict

REPO = Path(__file__).resolve().parents[1]
_SERVICE_ENV = ("KAFKA_BOOTSTRAP_SERVERS", "CLICKHOUSE_URL", "REDIS_URL")


def footage_path() -> Path:
    path = Path(os.environ.get("CAMCOUNT_TEST_FOOTAGE", REPO / ".camcount" / "data" / "vtest.avi"))
    if not path.is_file():
        raise FileNotFoundError(f"test footage {path} is missing: run `make footage` (or set CAMCOUNT_TEST_FOOTAGE)")
    return path


class CamcountProcesses:
    """Starts ``camcount`` subcommands with exactly the given Settings (written to a YAML file) and stops them."""

    def __init__(self, settings: Settings, workdir: Path) -> None:
        self.settings = settings
        self.workdir = workdir
        self.config_file = workdir / f"settings-{uuid.uuid4().hex[:6]}.yaml"
        document = settings.model_dump(mode="json")
        document["home"] = str(settings.home)
        self.config_file.write_text(yaml.safe_dump(document))
        self.processes: list[tuple[str, subprocess.Popen]] = []

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAMCOUNT_") and k not in _SERVICE_ENV}
        env["CAMCOUNT_CONFIG"] = str(self.config_file)
        env.update(extra)
        return env

    def start(self, name: str, *args: str, **env: str) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "wb")
        process = subprocess.Popen([sys.executable, "-m", "camcount.cli", *args], stdout=log,
                                   stderr=subprocess.STDOUT, env=self.env(**env), cwd=REPO)
        self.processes.append((name, process))
        return process

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "camcount.cli", *args], capture_output=True, text=True,
                              env=self.env(), cwd=REPO, timeout=timeout)

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for _, process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for _, process in self.processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def frame_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The detections records of frames: without the END record that follows each ingest run's last frame."""
    return [r for r in records if r["status"] != "END"]


def consume_records(settings: Settings, topic: str, until: Callable[[list[dict[str, Any]]], bool],
                    timeout_s: float, decode: Callable[[bytes, dict], dict] | None = None) -> list[dict[str, Any]]:
    """Read ``topic`` from the beginning with a fresh group until ``until(records)`` or the timeout.

    Each record gets ``_partition``, ``_offset`` and ``_headers`` alongside its decoded fields.
    """
    decode = decode or (lambda value, headers: DETECTIONS.decode(value, headers))
    consumer = Consumer(consumer_config(settings, f"test-reader-{uuid.uuid4().hex[:8]}"))
    consumer.subscribe([topic])
    records: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not until(records):
            for message in consumer.consume(500, timeout=0.5):
                if message.error() is not None:
                    continue
                headers = headers_dict(message.headers())
                record = decode(message.value(), headers)
                record.update(_partition=message.partition(), _offset=message.offset(), _headers=headers)
                records.append(record)
    finally:
        consumer.close()
    return records
