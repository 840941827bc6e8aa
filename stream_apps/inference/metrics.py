"""Prometheus metrics of the inference worker, named by stage so an operator can see where time goes, and the
per-record timing header that carries the same stages to whoever reads the detections.

Average batch size = rate(camcount_inference_frames_total{status="ok"}) / rate(camcount_inference_batches_total).

A frame's path through a worker, stage by stage (histogram, then the header's timestamps it runs between):
  fetch    its Kafka timestamp (the producer's send, or the broker's append time) -> fetched by the worker;
  decode   fetched -> decoded (includes waiting for a decode thread);
  queue    fetched -> its model batch starts (decoding runs within it);
  preprocess, compute, postprocess: the model run of its batch (header: infer_start -> infer_end);
  publish  the batch's inference end -> its records queued in the producer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from models.detector import Detector
from models.fallback import FallbackChain

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)

TIMING_HEADER = "camcount-timing"
"""Header on every detections record: when the worker fetched, decoded, inferred and produced it, as
``fetched=1732000000123.456,decoded=...,infer_start=...,infer_end=...,produced=...,batch=3`` (wall-clock ms since
the epoch, comparable with the frame's ``capture_ts_ms`` on the same host; ``batch`` is the size of the model run
it was part of). SKIPPED records have no infer_start/infer_end/batch. Readers must ignore keys they do not know."""
TIMING_STAGES = ("fetched", "decoded", "infer_start", "infer_end", "produced")


def timing_header(times: Mapping[str, float]) -> tuple[str, bytes]:
    """``(TIMING_HEADER, value)`` for ``times`` (stage -> ms since the epoch, plus ``batch``)."""
    return TIMING_HEADER, ",".join(
        f"{key}={value:d}" if isinstance(value, int) else f"{key}={value:.3f}" for key, value in times.items()
    ).encode()


def parse_timing(value: bytes | None) -> dict[str, float]:
    """The stages of a :data:`TIMING_HEADER` value (empty if absent); a malformed pair is skipped."""
    times: dict[str, float] = {}
    for pair in (value or b"").decode(errors="replace").split(","):
        key, _, number = pair.partition("=")
        try:
            if key.strip():
                times[key.strip()] = float(number)
        except ValueError:
            continue
    return times


class InferenceMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        model_labels = ("model", "version", "variant")
        self.frames = Counter("camcount_inference_frames", "Frames handled, by outcome",
                              (*model_labels, "status"), registry=r)
        self.batches = Counter("camcount_inference_batches", "Model executions (batches run)",
                               ("model", "version"), registry=r)
        self.batch_size = Histogram("camcount_inference_batch_size", "Frames per model execution",
                                    ("model", "version"), buckets=_BATCH_BUCKETS, registry=r)
        stage = lambda name, doc: Histogram(  # noqa: E731 - one line per stage reads best
            f"camcount_inference_{name}_seconds", doc, ("model", "version"), buckets=_LATENCY_BUCKETS, registry=r)
        self.fetch = stage("fetch", "Time from the frame's Kafka timestamp (its send, or broker append) to the "
                                    "worker's fetch")
        self.decode = stage("decode", "Time from fetch to the frame decoded (includes waiting for a decode thread)")
        self.queue = stage("queue", "Time from fetch to the start of the frame's model batch (decoding included)")
        self.preprocess = stage("preprocess", "Letterbox + normalisation per batch (JPEG decoding is the decode stage)")
        self.compute = stage("compute", "Model execution per batch")
        self.postprocess = stage("postprocess", "Box decoding + NMS per batch")
        self.publish = stage("publish", "Producing a batch's detections (acknowledgements are awaited off this path)")
        self.e2e = Histogram("camcount_inference_e2e_seconds", "Capture time to detections produced",
                             ("model", "version"), buckets=_LATENCY_BUCKETS, registry=r)
        self.dead_letters = Counter("camcount_dead_letters", "Frames sent to the dead-letter topic, by code",
                                    ("code", "detail"), registry=r)
        self.fallback_frames = Counter("camcount_inference_fallback_frames",
                                       "Frames served by a fallback model (model.fallbacks) instead of the production "
                                       "reference", ("model", "version"), registry=r)
        self.lag = Gauge("camcount_consumer_lag", "Messages behind the partition's high watermark",
                         ("topic", "partition"), registry=r)


class LoadedModelsCollector(Collector):
    """Scrape-time view of the models a worker has loaded, so dashboards show which version runs on which provider.

    ``camcount_model_info`` is 1 per loaded model with its provider, state and graph-cache use as labels (a worker
    that fell back to CPU shows it here); ``camcount_model_warmup_seconds`` is its last warm-up time.
    """

    def __init__(self, detectors: Callable[[], Sequence[Detector]]) -> None:
        self._detectors = detectors

    def collect(self) -> Iterator[GaugeMetricFamily]:
        info = GaugeMetricFamily("camcount_model_info", "Loaded model versions (1 each), with provider and state",
                                 labels=("model", "version", "provider", "state", "graph_cache"))
        warmup = GaugeMetricFamily("camcount_model_warmup_seconds", "Last warm-up time of a loaded model",
                                   labels=("model", "version"))
        seen: set[tuple[str, str]] = set()
        for detector in self._detectors():
            status = detector.status()
            if (status["name"], status["version"]) in seen:  # one series per version, however many copies
                continue
            seen.add((status["name"], status["version"]))
            info.add_metric([status["name"], status["version"], status["provider"], status["state"],
                             status["graph_cache"]], 1)
            if status["warmup_ms"] is not None:
                warmup.add_metric([status["name"], status["version"]], status["warmup_ms"] / 1000)
        yield info
        yield warmup


class FallbackCollector(Collector):
    """Model health of the production reference, read at scrape time:
    ``camcount_model_fallback_active{reference, model, version, target}`` is 1 while a fallback serves (model/version:
    the one serving; target: the version the reference names), else 0 with the reference's own model;
    ``camcount_model_load_failures_total{reference, code, detail}`` counts failed loads (start-up, fallbacks, hot
    swaps) by error code."""

    def __init__(self, chain: FallbackChain | None) -> None:
        self._chain = chain

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        active = GaugeMetricFamily("camcount_model_fallback_active",
                                   "1 while a fallback model serves the production reference's frames",
                                   labels=("reference", "model", "version", "target"))
        failures = CounterMetricFamily("camcount_model_load_failures", "Failed model loads, by error code",
                                       labels=("reference", "code", "detail"))
        if self._chain is not None:
            status = self._chain.status()
            model, _, version = (status["serving"] or "@").partition("@")
            active.add_metric([self._chain.reference, model, version, status["target"] or ""],
                              int(status["fallback_active"]))
            for (code, detail), count in sorted(self._chain.load_failures().items()):
                failures.add_metric([self._chain.reference, code, detail], count)
        yield active
        yield failures
