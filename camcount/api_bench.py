"""``camcount bench api``: a load test of a local ``camcount api``, against the same model's in-process throughput
measured in the same run.

One run, in this order, on one machine:

  1. start ``camcount api`` as a subprocess (the settings' model reference, max batch ``batch``), wait until ready;
  2. in this process, load the same model version at the same max batch and measure its throughput as
     ``camcount bench pipeline`` does in-process: JPEG decode (thread pool) then ``detect``, batch by batch, as fast
     as it goes (again right after the saturation run; the figure is the mean of both, so load from elsewhere on a
     shared machine weighs on both sides of the ratio alike); and one frame's batch-1 ``detect`` time
     (``models.benchmark.single_frame_ms``);
  3. saturation: ``clients`` concurrent clients (httpx.AsyncClient, keep-alive, raw ``image/jpeg`` bodies) send as
     fast as answered for ``duration_s`` (after a warm-up that is not counted). Every request carries distinct
     bytes (footage frames, each sent with its own count of trailing NUL padding, which decoders ignore), so every
     one is a cache miss and really inferred;
  4. half load: requests paced at half the saturation rate (open loop: sent on schedule, whether or not earlier
     ones were answered), distinct as above; its p95 is held against the bar 100 ms + one batch-1 inference;
  5. cached: the clients repeat a handful of images, to show what the result cache adds.

The throughput ratio is saturation requests/s over the in-process images/s; the issue's bar is >= 0.9.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import httpx
import numpy as np
import psutil
import yaml

from camcount.stack import LocalStack
from foundation.errors import CamcountError
from foundation.process_metrics import cpu_seconds
from foundation.settings import Settings
from models.benchmark import single_frame_ms
from models.detector import Detector
from models.loading import load_detector
from producers.encoding import encode_jpeg
from producers.sources import sample_frames

LATENCY_BAR_BASE_MS = 100.0
THROUGHPUT_BAR = 0.9


class ApiBenchError(CamcountError):
    """The API under test could not be started or did not answer."""

    code = "CLI_002"
    detail = "api-bench-failed"


@dataclass(frozen=True)
class LoadRun:
    """One load run: what was sent and how it was answered (latencies in ms, client side)."""

    name: str
    clients: int
    target_rate: float | None
    duration_s: float
    requests: int
    errors: int
    requests_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    cache_hit_rate: float
    mean_batch: float | None
    error_examples: list[str]


@dataclass(frozen=True)
class ApiBenchFigures:
    model: str
    provider: str
    max_batch: int
    clients: int
    in_process_images_per_s: float
    """The mean of two in-process measurements, just before and just after the saturation run (the machine may be
    shared: measuring on both sides of it makes the ratio fairer)."""
    in_process_runs: list[float]
    cpu_ms_per_image: dict[str, float]
    """CPU time (all threads, user + system) per image: of this process in-process (``in_process``); of the API
    process and of this process's load generator at saturation. Unlike rates, it hardly moves with load from
    elsewhere, so it shows what the HTTP path adds even on a busy machine."""
    batch1_ms: float
    saturation: LoadRun
    half_load: LoadRun
    cached: LoadRun | None

    @property
    def throughput_ratio(self) -> float:
        return self.saturation.requests_per_s / self.in_process_images_per_s

    @property
    def latency_bar_ms(self) -> float:
        return LATENCY_BAR_BASE_MS + self.batch1_ms

    def as_dict(self) -> dict:
        return {**asdict(self), "throughput_ratio": round(self.throughput_ratio, 3),
                "throughput_bar": THROUGHPUT_BAR, "latency_bar_ms": round(self.latency_bar_ms, 1),
                "throughput_ok": self.throughput_ratio >= THROUGHPUT_BAR,
                "latency_ok": self.half_load.p95_ms <= self.latency_bar_ms,
                "errors_ok": self.saturation.errors == 0 and self.half_load.errors == 0}


# --- the server --------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ApiProcess:
    """``camcount api`` in a subprocess with ``settings`` (written to a YAML file) and a fresh admin key."""

    def __init__(self, settings: Settings, workdir: Path) -> None:
        self.admin_key = uuid.uuid4().hex
        self.settings = settings
        self.url = f"http://127.0.0.1:{settings.api.port}"
        config = workdir / "api-settings.yaml"
        document = settings.model_dump(mode="json")
        document["home"] = str(Path(settings.home).resolve())
        config.write_text(yaml.safe_dump(document))
        self.log_path = workdir / "api.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAMCOUNT_")
               and k not in ("KAFKA_BOOTSTRAP_SERVERS", "CLICKHOUSE_URL", "REDIS_URL")}
        env |= {"CAMCOUNT_CONFIG": str(config), "CAMCOUNT_API_ADMIN_KEY": self.admin_key}
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen([sys.executable, "-m", "camcount.cli", "api"], stdout=self._log,
                                        stderr=subprocess.STDOUT, env=env)

    def wait_ready(self, timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        tail = self.log_path.read_text(errors="replace")[-2000:]
        raise ApiBenchError(f"camcount api did not become ready within {timeout_s:g} s; its log ends:\n{tail}",
                            remedy=f"read {self.log_path}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def batch_counts(self) -> tuple[float, float]:
        """(sum, count) of the server's batch-size histogram: images and model runs so far."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        total = sum(float(v) for v in re.findall(r"^camcount_api_batch_size_sum\{[^}]*\} (\S+)$", text, re.M))
        runs = sum(float(v) for v in re.findall(r"^camcount_api_batch_size_count\{[^}]*\} (\S+)$", text, re.M))
        return total, runs


# --- in process --------------------------------------------------------------------------------------------------
def _decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def in_process_images_per_s(detector: Detector, jpegs: Sequence[bytes], batch: int, seconds: float = 8.0) -> float:
    """Images per second of JPEG decode (thread pool) then ``detect``, batch by batch, for about ``seconds``."""
    with ThreadPoolExecutor(2) as pool:
        detector.detect(list(pool.map(_decode, jpegs[:batch])))  # warm-up
        done, started = 0, time.perf_counter()
        for start in itertools.cycle(range(0, len(jpegs) - batch + 1, batch)):
            detector.detect(list(pool.map(_decode, jpegs[start:start + batch])))
            done += batch
            if time.perf_counter() - started >= seconds:
                break
        return done / (time.perf_counter() - started)


# --- load --------------------------------------------------------------------------------------------------------
def distinct_bodies(jpegs: Sequence[bytes]) -> Iterator[bytes]:
    """Endless distinct request bodies: the frames in turn, each round with one more trailing NUL byte."""
    for round_ in itertools.count(1):
        for jpeg in jpegs:
            yield jpeg + b"\x00" * round_


@dataclass
class _Sample:
    sent: float
    latency_ms: float
    ok: bool
    cached: bool
    error: str = ""


async def _post(http: httpx.AsyncClient, path: str, body: bytes) -> _Sample:
    sent = time.perf_counter()
    try:
        response = await http.post(path, content=body)
        ok = response.status_code == 200
        cached = ok and response.json().get("cached", False)
        error = "" if ok else f"HTTP {response.status_code}: {response.text[:160]}"
    except httpx.HTTPError as exc:
        ok, cached, error = False, False, f"{type(exc).__name__}: {exc}"
    return _Sample(sent, (time.perf_counter() - sent) * 1000, ok, cached, error)


def _client(url: str, admin_key: str, clients: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, timeout=120, headers={"X-API-Key": admin_key,
                                                                 "Content-Type": "image/jpeg"},
                             limits=httpx.Limits(max_connections=clients, max_keepalive_connections=clients))


async def closed_loop(url: str, admin_key: str, path: str, bodies: Iterator[bytes], clients: int,
                      warmup_s: float, duration_s: float) -> tuple[list[_Sample], float, float]:
    """``clients`` clients, each sending its next request as soon as the last is answered, until ``warmup_s`` +
    ``duration_s`` have passed. Returns the samples and the measured window (start, end): the ``duration_s``
    after the warm-up; what completes inside it is counted."""
    samples: list[_Sample] = []
    async with _client(url, admin_key, clients) as http:
        start = time.perf_counter()
        window_start, stop_at = start + warmup_s, start + warmup_s + duration_s

        async def one_client() -> None:
            while time.perf_counter() < stop_at:
                samples.append(await _post(http, path, next(bodies)))

        await asyncio.gather(*(one_client() for _ in range(clients)))
    return samples, window_start, stop_at


async def open_loop(url: str, admin_key: str, path: str, bodies: Iterator[bytes], rate: float, clients: int,
                    duration_s: float) -> list[_Sample]:
    """Requests sent on a fixed schedule, ``rate`` per second for ``duration_s``, whatever the answers (at most
    ``clients`` connections)."""
    async with _client(url, admin_key, clients) as http:
        start, tasks = time.perf_counter(), []
        for index in range(int(rate * duration_s)):
            delay = start + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_post(http, path, next(bodies))))
        return list(await asyncio.gather(*tasks))


def _completed_in(samples: Sequence[_Sample], window: tuple[float, float]) -> list[_Sample]:
    return [s for s in samples if window[0] <= s.sent + s.latency_ms / 1000 < window[1]]


def _sent_in(samples: Sequence[_Sample], window: tuple[float, float]) -> list[_Sample]:
    return [s for s in samples if window[0] <= s.sent < window[1]]


def _summary(name: str, counted: Sequence[_Sample], clients: int, rate: float | None, window: tuple[float, float],
             mean_batch: float | None) -> LoadRun:
    """Figures of the ``counted`` samples over ``window`` (requests/s = answered ones / window length)."""
    answered = [s for s in counted if s.ok]
    latencies = [s.latency_ms for s in answered] or [float("nan")]
    elapsed = window[1] - window[0]
    p50, p95, p99 = (round(float(v), 1) for v in np.percentile(latencies, [50, 95, 99]))
    return LoadRun(name=name, clients=clients, target_rate=None if rate is None else round(rate, 2),
                   duration_s=round(elapsed, 2), requests=len(counted), errors=len(counted) - len(answered),
                   requests_per_s=round(len(answered) / elapsed, 2), p50_ms=p50, p95_ms=p95, p99_ms=p99,
                   cache_hit_rate=round(sum(s.cached for s in answered) / max(1, len(answered)), 4),
                   mean_batch=None if mean_batch is None else round(mean_batch, 2),
                   error_examples=sorted({s.error for s in counted if not s.ok})[:5])


def _mean_batch(before: tuple[float, float], after: tuple[float, float]) -> float | None:
    runs = after[1] - before[1]
    return (after[0] - before[0]) / runs if runs > 0 else None


def bench_api(settings: Settings, footage: Path, clients: int = 100, duration_s: float = 20.0,
              warmup_s: float = 5.0, frames: int = 64, batch: int | None = None, cached_run: bool = True,
              in_process_s: float = 10.0, progress=lambda line: None) -> ApiBenchFigures:
    """Run the whole benchmark (see the module docstring) and return its figures."""
    batch = batch or settings.api.max_batch
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request otherwise
    progress("starting the local stack unless it runs (the API's Redis cache and ClickHouse request log)")
    LocalStack(settings).up()
    jpegs = [encode_jpeg(frame) for frame in sample_frames(footage, frames)]
    reference = settings.model.reference
    with tempfile.TemporaryDirectory(prefix="camcount-api-bench-") as workdir:
        server_settings = settings.model_copy(update={"api": settings.api.model_copy(update={
            "port": _free_port(), "host": "127.0.0.1", "max_batch": batch,
            "auth_failure_limit": 1_000_000, "request_timeout_s": max(settings.api.request_timeout_s, 120.0)})})
        progress(f"starting camcount api ({reference}, max batch {batch})")
        server = ApiProcess(server_settings, Path(workdir))
        try:
            server.wait_ready()
            progress("measuring the model in-process (decode + detect)")
            detector = load_detector(settings, reference, max_batch=batch,
                                     intra_op_threads=settings.api.intra_op_threads)
            decoded = [_decode(j) for j in jpegs[:24]]
            batch1 = single_frame_ms(detector, decoded)
            me, api_process = psutil.Process(), psutil.Process(server.process.pid)
            cpu_before = cpu_seconds(me)
            in_process_runs = [in_process_images_per_s(detector, jpegs, batch, in_process_s)]
            in_process_cpu_ms = (cpu_seconds(me) - cpu_before) * 1000 / (in_process_runs[0] * in_process_s)
            model, provider = f"{detector.name}@{detector.version}", detector.provider
            path = f"/api/v1/models/{reference}/inference"
            bodies = distinct_bodies(jpegs)

            progress(f"saturation: {clients} clients, {warmup_s:g} s warm-up + {duration_s:g} s")
            before = server.batch_counts()
            cpu_before = (cpu_seconds(api_process), cpu_seconds(me))
            samples, start, end = asyncio.run(closed_loop(server.url, server.admin_key, path, bodies, clients,
                                                          warmup_s, duration_s))
            answered = max(1, sum(s.ok for s in samples))
            cpu_ms = {"in_process": round(in_process_cpu_ms, 1),
                      "api_server": round((cpu_seconds(api_process) - cpu_before[0]) * 1000 / answered, 1),
                      "load_generator": round((cpu_seconds(me) - cpu_before[1]) * 1000 / answered, 1)}
            saturation = _summary("saturation (distinct images)", _completed_in(samples, (start, end)), clients,
                                  None, (start, end), _mean_batch(before, server.batch_counts()))
            progress("measuring the model in-process again")
            in_process_runs.append(in_process_images_per_s(detector, jpegs, batch, in_process_s))
            in_process = sum(in_process_runs) / len(in_process_runs)
            del detector

            rate = saturation.requests_per_s / 2
            progress(f"half load: {rate:.1f} requests/s for {duration_s:g} s")
            before = server.batch_counts()
            paced = asyncio.run(open_loop(server.url, server.admin_key, path, bodies, rate, clients, duration_s))
            window = (paced[0].sent, paced[-1].sent + 1 / rate) if paced else (0.0, 1.0)
            half = _summary("half load (paced, distinct)", _sent_in(paced, window), clients, rate, window,
                            _mean_batch(before, server.batch_counts()))

            cached = None
            if cached_run:
                progress(f"cached: {clients} clients repeating {min(8, len(jpegs))} images")
                repeat = itertools.cycle(jpegs[:8])
                samples, start, end = asyncio.run(closed_loop(server.url, server.admin_key, path, repeat, clients,
                                                              2.0, duration_s / 2))
                cached = _summary("cached (8 images repeated)", _completed_in(samples, (start, end)), clients,
                                  None, (start, end), None)
        finally:
            server.stop()
    return ApiBenchFigures(model=model, provider=provider, max_batch=batch, clients=clients,
                           in_process_images_per_s=round(in_process, 2),
                           in_process_runs=[round(r, 2) for r in in_process_runs], batch1_ms=round(batch1, 1),
                           cpu_ms_per_image=cpu_ms,
                           saturation=saturation, half_load=half, cached=cached)


def render(figures: ApiBenchFigures) -> str:
    """The figures as the table ``camcount bench api`` prints."""
    lines = [
        f"{figures.model} on {figures.provider}, max batch {figures.max_batch}, {figures.clients} clients",
        f"in-process (JPEG decode + detect, batch {figures.max_batch}): {figures.in_process_images_per_s:.1f} images/s"
        f" (before / after saturation: {' / '.join(f'{r:.1f}' for r in figures.in_process_runs)});"
        f" batch-1 detect {figures.batch1_ms:.1f} ms",
        f"{'run':<30} {'rate':>7} {'requests':>8} {'errors':>6} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'p99 ms':>8} {'cache hits':>10} {'mean batch':>10}",
    ]
    for run in (figures.saturation, figures.half_load, figures.cached):
        if run is None:
            continue
        rate = "-" if run.target_rate is None else f"{run.target_rate:.1f}"
        batch = "-" if run.mean_batch is None else f"{run.mean_batch:.2f}"
        lines.append(f"{run.name:<30} {rate:>7} {run.requests:>8} {run.errors:>6} {run.requests_per_s:>7.1f} "
                     f"{run.p50_ms:>8.1f} {run.p95_ms:>8.1f} {run.p99_ms:>8.1f} {run.cache_hit_rate:>10.1%} "
                     f"{batch:>10}")
        lines.extend(f"    error: {example}" for example in run.error_examples)
    cpu = figures.cpu_ms_per_image
    lines.append(f"CPU ms per image: in-process {cpu['in_process']:.1f}; at saturation API server "
                 f"{cpu['api_server']:.1f} + load generator {cpu['load_generator']:.1f}")
    ratio, bar = figures.throughput_ratio, figures.latency_bar_ms
    lines.append(f"throughput at saturation / in-process: {ratio:.3f} (bar >= {THROUGHPUT_BAR}: "
                 f"{'met' if ratio >= THROUGHPUT_BAR else 'NOT met'})")
    lines.append(f"half-load p95 {figures.half_load.p95_ms:.1f} ms vs bar 100 ms + batch-1 {figures.batch1_ms:.1f} ms"
                 f" = {bar:.1f} ms: {'met' if figures.half_load.p95_ms <= bar else 'NOT met'}")
    return "\n".join(lines)
