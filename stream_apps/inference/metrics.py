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

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from models.detections import Detections
from models.detector import Detector
from models.fallback import FallbackChain

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
_COUNT_BUCKETS = (0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89)
_CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
_AREA_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)

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
    """Every metric of an inference worker. ``output_distribution=False`` leaves out the output-distribution
    histograms (:class:`OutputDistribution`): their ``observe`` does nothing and they are not exported; only
    ``camcount bench output-metrics`` turns them off, to measure what they cost."""

    def __init__(self, registry: CollectorRegistry | None = None, output_distribution: bool = True) -> None:
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
        self.preprocess = stage("preprocess", "Letterbox per batch (normalisation runs inside the model, in compute; "
                                              "JPEG decoding is the decode stage)")
        self.compute = stage("compute", "Model execution per batch")
        self.postprocess = stage("postprocess", "Thresholds, NMS and mapping boxes back, per batch")
        self.publish = stage("publish", "Producing a batch's detections (acknowledgements are awaited off this path)")
        self.e2e = Histogram("camcount_inference_e2e_seconds", "Capture time to detections produced",
                             ("model", "version"), buckets=_LATENCY_BUCKETS, registry=r)
        self.dead_letters = Counter("camcount_dead_letters", "Frames sent to the dead-letter topic, by code",
                                    ("code", "detail"), registry=r)
        self.fallback_frames = Counter("camcount_inference_fallback_frames",
                                       "Frames served by a fallback model (model.fallbacks) instead of the production "
                                       "reference", ("model", "version"), registry=r)
        self.outputs: OutputDistribution | NoOutputDistribution = (
            OutputDistribution(r) if output_distribution else NoOutputDistribution())
        self.lag = Gauge("camcount_consumer_lag", "Messages behind the partition's high watermark",
                         ("topic", "partition"), registry=r)


class _BucketCounts:
    """One histogram's bucket counts and sums per label set, updated a whole array of values at a time."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = np.asarray(bounds, np.float64)
        self.counts: dict[tuple[str, ...], np.ndarray] = {}
        self.sums: dict[tuple[str, ...], float] = {}

    def add(self, labels: tuple[str, ...], values: np.ndarray) -> None:
        counts = self.counts.get(labels)
        if counts is None:
            counts = self.counts[labels] = np.zeros(len(self.bounds) + 1, np.int64)
            self.sums[labels] = 0.0
        buckets = np.searchsorted(self.bounds, values, side="left")  # value <= bound: that bucket
        counts += np.bincount(buckets, minlength=len(counts))
        self.sums[labels] += float(values.sum())

    def family(self, name: str, documentation: str, labels: Sequence[str]) -> HistogramMetricFamily:
        family = HistogramMetricFamily(name, documentation, labels=labels)
        for values, counts in self.counts.items():
            cumulative = np.cumsum(counts).tolist()
            buckets = [(floatToGoString(bound), count) for bound, count in zip(self.bounds.tolist(), cumulative)]
            family.add_metric(list(values), [*buckets, ("+Inf", cumulative[-1])], self.sums[values])
        return family


class OutputDistribution(Collector):
    """What a model outputs, per model version, variant and class: the signals drift monitoring compares over time
    (detections per frame, confidence of each box, box area as a fraction of the frame). Classes come from the
    model's manifest, so the label set is bounded by it.

    A Prometheus histogram observes one value per call (about 2 us each): a frame of ten boxes cost about 60 us in
    three of them. Here a batch's boxes are bucketed with numpy, once per class, and exported as histograms at
    scrape time (docs/performance.md has the cost per frame).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._lock = threading.Lock()
        self._per_frame = _BucketCounts(_COUNT_BUCKETS)
        self._confidence = _BucketCounts(_CONFIDENCE_BUCKETS)
        self._area = _BucketCounts(_AREA_BUCKETS)
        registry.register(self)

    def observe(self, detector: Detector, variant: str, frames: Sequence[Detections],
                frame_areas: Sequence[int]) -> None:
        """The outputs of ``frames`` (one Detections per frame, of ``frame_areas`` pixels each) of one model version
        and variant: one call per batch keeps the cost per frame small."""
        model = (detector.name, detector.version, variant)
        counts = np.array([len(detections) for detections in frames], np.float64)
        boxes = [detections for detections in frames if len(detections)]
        with self._lock:
            self._per_frame.add(model, counts)
            if not boxes:
                return
            class_id = np.concatenate([d.class_id for d in boxes])
            confidence = np.concatenate([d.confidence for d in boxes])
            xyxy = np.concatenate([d.xyxy for d in boxes])
            area = np.repeat([max(a, 1) for a, d in zip(frame_areas, frames) if len(d)], counts[counts > 0].astype(int))
            ratio = (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1]) / area
            names = detector.manifest.class_names
            for one_class in np.unique(class_id).tolist():
                chosen = class_id == one_class
                name = names[one_class] if 0 <= one_class < len(names) else str(one_class)
                self._confidence.add((*model, name), confidence[chosen])
                self._area.add((*model, name), ratio[chosen])

    def collect(self) -> Iterator[HistogramMetricFamily]:
        labels = ("model", "version", "variant")
        with self._lock:
            yield self._per_frame.family("camcount_inference_detections_per_frame", "Boxes kept per frame", labels)
            yield self._confidence.family("camcount_inference_detection_confidence", "Confidence of each kept box",
                                          (*labels, "class"))
            yield self._area.family("camcount_inference_box_area_ratio",
                                    "Area of each kept box over the frame's area", (*labels, "class"))


class NoOutputDistribution:
    """Stands in for :class:`OutputDistribution` when it is turned off: observes nothing, exports nothing."""

    def observe(self, detector: Detector, variant: str, frames: Sequence[Detections],
                frame_areas: Sequence[int]) -> None:
        return None


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
