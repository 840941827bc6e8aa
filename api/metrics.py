"""Prometheus metrics of the ``camcount api`` process, named by stage like the rest of camcount.

  camcount_api_requests_total{route, method, status}   requests answered (route = the path template)
  camcount_api_request_seconds{route}                  request latency, first byte in to response sent
  camcount_api_batch_size{model, version}              images per model run of the micro-batcher
  camcount_api_queue_seconds{model, version}           wait of a batch's oldest image before its run started
  camcount_api_compute_seconds{model, version}         model run time of a batch (pre + inference + post)
  camcount_api_images_total{model, version, source}    images answered: source = model or cache
  camcount_api_cache_lookups_total{result}             result-cache lookups: hit, miss, error (Redis away: a miss)
  camcount_api_auth_failures_total{code}               401/403/429 answers by code
  camcount_api_request_log_dropped_total{reason}       request-log rows not written to ClickHouse
  camcount_api_models_loaded                           model versions loaded now
  camcount_dependency_breaker_state{dependency}        as in every camcount process (redis-result-cache, ...)
  process_*, camcount_process_*, camcount_gpu_*        resource metrics of every camcount process

Cache hit rate = rate(...cache_lookups_total{result="hit"}) / rate(...cache_lookups_total).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from foundation.process_metrics import register_resource_metrics
from foundation.resilience import BreakerMetrics

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        model = ("model", "version")
        self.requests = Counter("camcount_api_requests", "HTTP requests answered", ("route", "method", "status"),
                                registry=r)
        self.latency = Histogram("camcount_api_request_seconds", "Request latency", ("route",),
                                 buckets=_LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("camcount_api_batch_size", "Images per model run", model,
                                    buckets=_BATCH_BUCKETS, registry=r)
        self.queue = Histogram("camcount_api_queue_seconds", "Wait of a batch's oldest image before its run",
                               model, buckets=_LATENCY_BUCKETS, registry=r)
        self.compute = Histogram("camcount_api_compute_seconds", "Model run time of a batch", model,
                                 buckets=_LATENCY_BUCKETS, registry=r)
        self.images = Counter("camcount_api_images", "Images answered, from the model or the cache",
                              (*model, "source"), registry=r)
        self.cache_lookups = Counter("camcount_api_cache_lookups", "Result cache lookups by result", ("result",),
                                     registry=r)
        self.auth_failures = Counter("camcount_api_auth_failures", "Refused authentications by code", ("code",),
                                     registry=r)
        self.request_log_dropped = Counter("camcount_api_request_log_dropped",
                                           "Request-log rows dropped instead of written to ClickHouse", ("reason",),
                                           registry=r)
        self.models_loaded = Gauge("camcount_api_models_loaded", "Model versions loaded", registry=r)
        self.breakers = BreakerMetrics(r)
        register_resource_metrics(r)
        for result in ("hit", "miss", "error"):
            self.cache_lookups.labels(result)
