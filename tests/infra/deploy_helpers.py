"""Helpers shared by the deployment-config tests (compose, Dockerfile, Prometheus, Grafana, Kubernetes).

No Docker engine or cluster needed: the files are parsed and checked against each other and against
``foundation.settings.Settings`` (every env var a camcount container gets must be one the settings accept).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from foundation.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

INFER_METRICS_PORT = 9400
COUNT_WEB_PORT = 6066
API_PORT = 8080
MONITOR_METRICS_PORT = 9402
CONVENTIONAL_ENV = {"KAFKA_BOOTSTRAP_SERVERS", "CLICKHOUSE_URL", "REDIS_URL"}
SPECIAL_CAMCOUNT_ENV = {"CAMCOUNT_CONFIG", "CAMCOUNT_API_ADMIN_KEY"}  # the YAML settings file; the API's bootstrap key
TOPICS = {"frames", "detections", "crossings", "window-counts", "frames-dlq"}

# name -> (type, labels) of every metric the infer worker, the count app (with its in-process sink), the API and the
# monitor export.
METRICS: dict[str, tuple[str, set[str]]] = {
    "camcount_inference_frames_total": ("counter", {"model", "version", "variant", "status"}),
    "camcount_inference_batches_total": ("counter", {"model", "version"}),
    "camcount_inference_fetch_seconds": ("histogram", set()),
    "camcount_inference_queue_seconds": ("histogram", set()),
    "camcount_inference_decode_seconds": ("histogram", set()),
    "camcount_inference_preprocess_seconds": ("histogram", set()),
    "camcount_inference_compute_seconds": ("histogram", set()),
    "camcount_inference_postprocess_seconds": ("histogram", set()),
    "camcount_inference_publish_seconds": ("histogram", set()),
    "camcount_inference_e2e_seconds": ("histogram", set()),
    "camcount_inference_batch_size": ("histogram", set()),
    "camcount_inference_detections_per_frame": ("histogram", {"model", "version", "variant"}),
    "camcount_inference_detection_confidence": ("histogram", {"model", "version", "variant", "class"}),
    "camcount_inference_box_area_ratio": ("histogram", {"model", "version", "variant", "class"}),
    "camcount_consumer_lag": ("gauge", {"topic", "partition"}),
    "camcount_dead_letters_total": ("counter", {"code", "detail"}),
    "camcount_model_info": ("gauge", {"model", "version", "provider", "state", "graph_cache"}),
    "camcount_model_fallback_active": ("gauge", {"reference", "model", "version", "target"}),
    "camcount_model_load_failures_total": ("counter", {"reference", "code", "detail"}),
    "camcount_inference_fallback_frames_total": ("counter", {"model", "version"}),
    "camcount_model_warmup_seconds": ("gauge", {"model", "version"}),
    "camcount_crossings_total": ("counter", {"camera", "line", "direction", "class"}),
    "camcount_count_frames_total": ("counter", {"camera"}),
    "camcount_count_late_frames_total": ("counter", {"camera"}),
    "camcount_count_stream_ended": ("gauge", {"camera"}),
    "camcount_count_silence_ends_total": ("counter", {"camera"}),
    "camcount_count_dead_records_total": ("counter", {"code", "detail"}),
    "camcount_sink_dead_records_total": ("counter", {"topic", "code", "detail"}),
    "camcount_sink_up": ("gauge", set()),
    "camcount_dependency_breaker_state": ("gauge", {"dependency"}),
    # camcount api (api/metrics.py)
    "camcount_api_requests_total": ("counter", {"route", "method", "status"}),
    "camcount_api_request_seconds": ("histogram", {"route"}),
    "camcount_api_batch_size": ("histogram", {"model", "version"}),
    "camcount_api_queue_seconds": ("histogram", {"model", "version"}),
    "camcount_api_compute_seconds": ("histogram", {"model", "version"}),
    "camcount_api_images_total": ("counter", {"model", "version", "source"}),
    "camcount_api_cache_lookups_total": ("counter", {"result"}),
    "camcount_api_auth_failures_total": ("counter", {"code"}),
    "camcount_api_request_log_dropped_total": ("counter", {"reason"}),
    "camcount_api_models_loaded": ("gauge", set()),
    # camcount monitor (camcount/monitor.py)
    "camcount_drift_score": ("gauge", {"camera", "model", "version", "signal", "measure"}),
    "camcount_drift_active": ("gauge", {"camera", "model", "version"}),
    "camcount_drift_windows_total": ("counter", {"status"}),
    "camcount_model_health_events_total": ("counter", {"problem"}),
    "camcount_drift_window_end_timestamp_seconds": ("gauge", set()),
    "camcount_model_accuracy_ratio": ("gauge", {"model", "version", "metric"}),
    "camcount_model_accuracy_evaluated_timestamp_seconds": ("gauge", {"model", "version"}),
    # every process: foundation.process_metrics
    "process_cpu_seconds_total": ("counter", set()),
    "process_resident_memory_bytes": ("gauge", set()),
    "process_virtual_memory_bytes": ("gauge", set()),
    "process_start_time_seconds": ("gauge", set()),
    "process_open_fds": ("gauge", set()),
    "process_max_fds": ("gauge", set()),
    "python_info": ("gauge", {"implementation", "major", "minor", "patchlevel", "version"}),
    "camcount_process_threads": ("gauge", set()),
    "camcount_process_cpu_limit_cores": ("gauge", set()),
    "camcount_process_memory_limit_bytes": ("gauge", set()),
    "camcount_gpu_utilization_ratio": ("gauge", {"gpu", "name"}),
    "camcount_gpu_memory_used_bytes": ("gauge", {"gpu", "name"}),
    "camcount_gpu_memory_total_bytes": ("gauge", {"gpu", "name"}),
}
TARGET_LABELS = {"job", "instance"}
LABEL_VALUES = {"status": {"ok", "failed", "skipped"}, "topic": TOPICS}


def _load_yaml(path: Path) -> Any:
    with path.open() as f:
        return yaml.safe_load(f)


def _is_camcount(service: dict[str, Any]) -> bool:
    return "build" in service or "camcount" in str(service.get("image", "")).split("/")[-1]


def _interpolate(value: Any) -> str:
    """Resolve compose ${VAR:-default} / ${VAR-default} to the default, ${VAR} to '', $$ to $."""
    text = str(value)
    text = re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: m.group(2) or "", text)
    return text.replace("$$", "$")


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: _interpolate(v) for k, v in env.items()}


def _field_path_error(name: str) -> str | None:
    """None if env var ``name`` maps to a Settings field (CAMCOUNT_<SECTION>__<FIELD>), else why not."""
    if name in CONVENTIONAL_ENV or name in SPECIAL_CAMCOUNT_ENV:
        return None
    if not name.startswith("CAMCOUNT_"):
        return f"{name}: not CAMCOUNT_* and not one of {sorted(CONVENTIONAL_ENV)}"
    model: type[BaseModel] | None = Settings
    parts = name[len("CAMCOUNT_"):].lower().split("__")
    for i, part in enumerate(parts):
        if model is None:
            return f"{name}: {'.'.join(parts[:i])} is not a section"
        field = model.model_fields.get(part)
        if field is None:
            return f"{name}: {model.__name__} has no field {part!r}"
        ann = field.annotation
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    if model is not None:
        return f"{name}: {'.'.join(parts)} is a whole section, not a field"
    return None


def _settings_from_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Settings:
    import os

    for name in list(os.environ):
        if name.startswith("CAMCOUNT_") or name in CONVENTIONAL_ENV:
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings()


def _check_subcommand(argv: list[str]) -> str | None:
    """None if argv (after the `camcount` entrypoint) is a real camcount subcommand invocation."""
    if not argv:
        return "empty command"
    sub, rest = argv[0], argv[1:]
    if sub == "provision":
        if not rest:
            return None
        if len(rest) == 2 and rest[0] == "--wait":
            try:
                assert float(rest[1]) >= 0
                return None
            except (ValueError, AssertionError):
                return f"provision --wait {rest[1]!r} is not a non-negative number of seconds"
        return f"provision {rest}: only `provision [--wait SECONDS]` is a deploy command"
    if sub == "stack":
        return None if rest == ["up"] else f"stack {rest}: only `stack up` is a deploy command"
    if sub in ("infer", "count", "api", "monitor"):
        return None if not rest else f"{sub} takes no arguments here, got {rest}"
    if sub == "models":
        return None if rest == ["import-darknet", "--default"] else f"unknown models invocation {rest}"
    if sub == "ingest":
        seen: dict[str, str | None] = {}
        i = 0
        while i < len(rest):
            opt = rest[i]
            if opt == "--loop":
                seen[opt] = None
                i += 1
            elif opt in ("--camera-id", "--source", "--fps"):
                if i + 1 >= len(rest) or rest[i + 1].startswith("--"):
                    return f"ingest {opt} without a value"
                seen[opt] = rest[i + 1]
                i += 2
            else:
                return f"ingest: unknown option {opt!r}"
        missing = {"--camera-id", "--source"} - set(seen)
        if missing:
            return f"ingest without {sorted(missing)}"
        if "--fps" in seen:
            try:
                assert float(seen["--fps"] or "") > 0
            except (ValueError, AssertionError):
                return f"ingest --fps {seen['--fps']!r} is not a positive number"
        return None
    return f"{sub!r} is not a camcount subcommand"


def _strip_strings(expr: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)


def _promql_metric_errors(expr: str, metrics: dict[str, tuple[str, set[str]]] | None = None) -> list[str]:
    """Metric names, label names and known label values an expression uses, checked against METRICS (or
    ``metrics``, a superset a caller may pass). Recording rules' names (``level:metric:operations``) hold a colon and
    are not checked here."""
    table = METRICS if metrics is None else metrics
    errors: list[str] = []
    used: set[str] = set()
    for token in re.findall(r"(?<![\w:])camcount_[a-z0-9_]+", _strip_strings(expr)):
        base = token
        for suffix in ("_bucket", "_sum", "_count"):
            if token.endswith(suffix) and token[: -len(suffix)] in table:
                if table[token[: -len(suffix)]][0] != "histogram":
                    errors.append(f"{token}: {token[: -len(suffix)]} is not a histogram")
                base = token[: -len(suffix)]
        if base not in table:
            errors.append(f"unknown metric {token!r}")
            continue
        if base != token or table[base][0] != "histogram":
            used.add(base)
        else:
            errors.append(f"histogram {token!r} queried without _bucket/_sum/_count")
    allowed = set().union(*(table[m][1] for m in used)) | TARGET_LABELS if used else TARGET_LABELS
    for metric, selector in re.findall(r"(?<![\w:])(camcount_[a-z0-9_]+)\{([^}]*)\}", expr):
        base = re.sub(r"_(bucket|sum|count)$", "", metric) if metric not in table else metric
        labels = table.get(base, ("", set()))[1] | TARGET_LABELS | ({"le"} if metric.endswith("_bucket") else set())
        for label, value in re.findall(r'(\w+)\s*(?:=~|!~|!=|=)\s*"([^"]*)"', selector):
            if label not in labels:
                errors.append(f"{metric} has no label {label!r}")
            elif (label in LABEL_VALUES and not value.startswith("$")
                  and not set(value.split("|")) <= LABEL_VALUES[label]):
                errors.append(f"{metric}{{{label}={value!r}}}: values are {sorted(LABEL_VALUES[label])}")
    for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
        for label in (x.strip() for x in group.split(",") if x.strip()):
            if label != "le" and label not in allowed:
                errors.append(f"grouping by {label!r}, which none of {sorted(used)} has")
    return errors
