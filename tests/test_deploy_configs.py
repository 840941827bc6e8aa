"""Consistency checks for the deployment configs: docker-compose.yml, Dockerfile, Prometheus, Grafana, K8s.

No Docker engine or cluster needed: the files are parsed and checked against each other and against
``foundation.settings.Settings`` (every env var a camcount container gets must be one the settings accept).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from pydantic import BaseModel

from foundation.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PROMETHEUS_DIR = ROOT / "infra" / "prometheus"
GRAFANA_DIR = ROOT / "infra" / "grafana"
DASHBOARD_FILE = GRAFANA_DIR / "dashboards" / "camcount.json"
K8S_DIR = ROOT / "infra" / "k8s"
DDL_DIR = ROOT / "infra" / "clickhouse"

INFER_METRICS_PORT = 9400
COUNT_WEB_PORT = 6066
CONVENTIONAL_ENV = {"KAFKA_BOOTSTRAP_SERVERS", "CLICKHOUSE_URL", "REDIS_URL"}
SPECIAL_CAMCOUNT_ENV = {"CAMCOUNT_CONFIG"}  # names the YAML settings file; not a field
TOPICS = {"frames", "detections", "crossings", "window-counts", "frames-dlq"}

# name -> (type, labels) of every metric the infer worker and the count app export.
METRICS: dict[str, tuple[str, set[str]]] = {
    "camcount_inference_frames_total": ("counter", {"model", "version", "variant", "status"}),
    "camcount_inference_batches_total": ("counter", {"model", "version"}),
    "camcount_inference_queue_seconds": ("histogram", set()),
    "camcount_inference_preprocess_seconds": ("histogram", set()),
    "camcount_inference_compute_seconds": ("histogram", set()),
    "camcount_inference_postprocess_seconds": ("histogram", set()),
    "camcount_inference_publish_seconds": ("histogram", set()),
    "camcount_inference_e2e_seconds": ("histogram", set()),
    "camcount_inference_batch_size": ("histogram", set()),
    "camcount_consumer_lag": ("gauge", {"topic", "partition"}),
    "camcount_dead_letters_total": ("counter", {"code"}),
    "camcount_model_info": ("gauge", {"model", "version", "provider", "state", "graph_cache"}),
    "camcount_model_warmup_seconds": ("gauge", {"model", "version"}),
    "camcount_crossings_total": ("counter", {"camera", "line", "direction", "class"}),
    "camcount_count_frames_total": ("counter", {"camera"}),
    "camcount_count_late_frames_total": ("counter", {"camera"}),
}
TARGET_LABELS = {"job", "instance"}
LABEL_VALUES = {"status": {"ok", "failed", "skipped"}, "topic": TOPICS}


# ------------------------------------------------------------------------------------------------- helpers
def _load_yaml(path: Path) -> Any:
    with path.open() as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _load_yaml(COMPOSE_FILE)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _is_camcount(service: dict[str, Any]) -> bool:
    return "build" in service or "camcount" in str(service.get("image", "")).split("/")[-1]


@pytest.fixture(scope="module")
def camcount_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found = {name: svc for name, svc in services.items() if _is_camcount(svc)}
    assert found, "no service builds or runs the camcount image"
    return found


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


def _depends_on(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {d: {"condition": "service_started"} for d in deps}
    return deps


def _command(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command")
    assert cmd is not None, "camcount service without a command"
    return cmd.split() if isinstance(cmd, str) else [str(c) for c in cmd]


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
    if sub == "stack":
        return None if rest == ["up"] else f"stack {rest}: only `stack up` is a deploy command"
    if sub in ("infer", "count"):
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


def _promql_metric_errors(expr: str) -> list[str]:
    """Metric names, label names and known label values an expression uses, checked against METRICS."""
    errors: list[str] = []
    used: set[str] = set()
    for token in re.findall(r"\bcamcount_[a-z0-9_]+", _strip_strings(expr)):
        base = token
        for suffix in ("_bucket", "_sum", "_count"):
            if token.endswith(suffix) and token[: -len(suffix)] in METRICS:
                if METRICS[token[: -len(suffix)]][0] != "histogram":
                    errors.append(f"{token}: {token[: -len(suffix)]} is not a histogram")
                base = token[: -len(suffix)]
        if base not in METRICS:
            errors.append(f"unknown metric {token!r}")
            continue
        if base != token or METRICS[base][0] != "histogram":
            used.add(base)
        else:
            errors.append(f"histogram {token!r} queried without _bucket/_sum/_count")
    allowed = set().union(*(METRICS[m][1] for m in used)) | TARGET_LABELS if used else TARGET_LABELS
    for metric, selector in re.findall(r"\b(camcount_[a-z0-9_]+)\{([^}]*)\}", expr):
        base = re.sub(r"_(bucket|sum|count)$", "", metric) if metric not in METRICS else metric
        labels = METRICS.get(base, ("", set()))[1] | TARGET_LABELS | ({"le"} if metric.endswith("_bucket") else set())
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


def _prometheus_config() -> dict[str, Any]:
    return _load_yaml(PROMETHEUS_DIR / "prometheus.yml")


def _alert_rules() -> list[dict[str, Any]]:
    doc = _load_yaml(PROMETHEUS_DIR / "alerts.yml")
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _assert_prometheus_config_structure() -> None:
    cfg = _prometheus_config()
    assert isinstance(cfg, dict) and set(cfg) <= {"global", "rule_files", "scrape_configs", "alerting"}, cfg.keys()
    assert re.fullmatch(r"\d+[smh]", cfg["global"]["scrape_interval"])
    for rule_file in cfg["rule_files"]:
        assert (PROMETHEUS_DIR / rule_file).is_file(), f"rule file {rule_file} missing next to prometheus.yml"
    names = [job["job_name"] for job in cfg["scrape_configs"]]
    assert len(names) == len(set(names)), f"duplicate job_name in {names}"
    for job in cfg["scrape_configs"]:
        assert set(job) <= {"job_name", "metrics_path", "scrape_interval", "static_configs", "dns_sd_configs"}, job
        assert job.get("static_configs") or job.get("dns_sd_configs"), f"{job['job_name']} has no targets"
        for sc in job.get("static_configs", []):
            assert sc["targets"] and all(re.fullmatch(r"[\w.-]+:\d+", t) for t in sc["targets"]), sc
        for dns in job.get("dns_sd_configs", []):
            assert dns["names"] and dns["type"] == "A" and isinstance(dns["port"], int), dns


def _assert_alert_rules_structure() -> None:
    doc = _load_yaml(PROMETHEUS_DIR / "alerts.yml")
    assert set(doc) == {"groups"}
    for group in doc["groups"]:
        assert group["name"] and group["rules"], group
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", rule["alert"]), rule["alert"]
            assert isinstance(rule["expr"], str) and rule["expr"].strip()
            assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
            assert rule["annotations"]["summary"], rule["alert"]
            if "for" in rule:
                assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD_FILE.read_text())


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def _prom_exprs(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in _panels(dashboard) for t in p.get("targets", []) if "expr" in t]
    for var in dashboard.get("templating", {}).get("list", []):
        q = var.get("query")
        exprs.append(q["query"] if isinstance(q, dict) else str(q or ""))
    return [e for e in exprs if e]


@pytest.fixture(scope="module")
def k8s_docs() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S_DIR.glob("*.yaml")):
        with path.open() as f:
            for doc in yaml.safe_load_all(f):
                if doc is not None:
                    doc["__file__"] = path.name
                    docs.append(doc)
    assert docs, "no manifests in infra/k8s"
    return docs


def _k8s(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def _pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet", "Job", "DaemonSet"):
            out.append((f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"]))
    return out


def _k8s_env(docs: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """A container's environment: envFrom Secrets/ConfigMaps, then env (fieldRefs as a sample pod name)."""
    env: dict[str, str] = {}
    for src in container.get("envFrom", []):
        if "secretRef" in src:
            secret = _k8s(docs, "Secret", src["secretRef"]["name"])
            env.update({k: str(v) for k, v in secret.get("stringData", {}).items()})
        if "configMapRef" in src:
            env.update(_k8s(docs, "ConfigMap", src["configMapRef"]["name"]).get("data", {}))
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        elif item.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[item["name"]] = "infer-0"
        else:
            env[item["name"]] = "from-elsewhere"
    return env


def _containers(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    return [(f"{owner}/{c['name']}", c, spec) for owner, spec in _pod_specs(docs) for c in spec["containers"]]


def _mounted_file(docs: list[dict[str, Any]], pod: dict[str, Any], container: dict[str, Any], path: str) -> str | None:
    """Content of ``path`` if it comes from a ConfigMap volume mounted in the container."""
    for mount in container.get("volumeMounts", []):
        prefix = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(prefix):
            volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
            if "configMap" in volume:
                return _k8s(docs, "ConfigMap", volume["configMap"]["name"])["data"].get(path[len(prefix):])
    return None


# ------------------------------------------------------------------------------------------------- compose
def test_compose_depends_on_only_names_existing_services(services):
    for name, svc in services.items():
        for dep in _depends_on(svc):
            assert dep in services, f"{name} depends on unknown service {dep!r}"


def test_compose_service_healthy_dependencies_have_healthchecks(services):
    for name, svc in services.items():
        for dep, cond in _depends_on(svc).items():
            if cond.get("condition") == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy; {dep} has no healthcheck"


def test_compose_init_runs_stack_up_after_data_services_are_healthy(services):
    init = services["camcount-init"]
    assert _command(init) == ["stack", "up"]
    assert init.get("restart") == "no", "a one-shot init must not be restarted after it exits 0"
    deps = _depends_on(init)
    for data in ("kafka", "clickhouse", "redis"):
        assert deps.get(data, {}).get("condition") == "service_healthy", f"init must wait for healthy {data}"


def test_compose_camcount_services_wait_for_init_to_complete(camcount_services):
    for name, svc in camcount_services.items():
        if name == "camcount-init":
            continue
        cond = _depends_on(svc).get("camcount-init", {}).get("condition")
        assert cond == "service_completed_successfully", f"{name} must start after camcount-init succeeded"


def test_compose_has_all_roles(camcount_services):
    roles = {_command(svc)[0] for svc in camcount_services.values()}
    assert {"stack", "ingest", "infer", "count"} <= roles, roles


def test_compose_commands_are_real_camcount_subcommands(camcount_services):
    for name, svc in camcount_services.items():
        error = _check_subcommand(_command(svc))
        assert error is None, f"{name}: {error}"


def test_compose_ingest_services_have_distinct_cameras_and_mounted_sources(camcount_services):
    cameras = []
    for name, svc in camcount_services.items():
        argv = _command(svc)
        if argv[0] != "ingest":
            continue
        cameras.append(argv[argv.index("--camera-id") + 1])
        source = argv[argv.index("--source") + 1]
        if "://" not in source:
            targets = [str(v).rsplit(":", 2)[1] if str(v).count(":") >= 1 else "" for v in svc.get("volumes", [])]
            assert any(source.startswith(t.rstrip("/") + "/") for t in targets if t), f"{name}: {source} not mounted"
    assert len(cameras) >= 2 and len(cameras) == len(set(cameras)), cameras


def test_compose_camcount_env_var_names_are_settings_fields(camcount_services):
    errors = [err for svc in camcount_services.values() for name in _env(svc) if (err := _field_path_error(name))]
    assert not errors, errors


def test_compose_camcount_env_builds_valid_settings(camcount_services, monkeypatch):
    for name, svc in camcount_services.items():
        with monkeypatch.context() as m:
            settings = _settings_from_env(m, _env(svc))
            assert settings.kafka.bootstrap_servers and settings.clickhouse.url and settings.redis.url, (
                f"{name}: all three service addresses must be set so `stack up` starts nothing"
            )


def test_compose_kafka_bootstrap_is_the_internal_listener(services, camcount_services):
    kafka_env = _env(services["kafka"])
    inter = kafka_env["KAFKA_INTER_BROKER_LISTENER_NAME"]
    advertised = dict(
        (entry.split("://")[0], entry.split("://")[1]) for entry in kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    )
    internal = advertised[inter]
    assert internal.split(":")[0] in services, f"internal listener {internal} is not a compose service name"
    for name, svc in camcount_services.items():
        assert _env(svc)["KAFKA_BOOTSTRAP_SERVERS"] == internal, f"{name} bootstraps elsewhere than {internal}"


def test_compose_kafka_listeners_are_consistent(services):
    env = _env(services["kafka"])
    listeners = {e.split("://")[0]: e.split("://")[1] for e in env["KAFKA_LISTENERS"].split(",")}
    advertised = {e.split("://")[0]: e.split("://")[1] for e in env["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    protocols = dict(e.split(":") for e in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller", "single-node KRaft"
    assert set(listeners) <= set(protocols) and set(advertised) <= set(listeners)
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] not in advertised
    published = {str(p).rsplit(":", 1)[-1] for p in services["kafka"].get("ports", [])}
    external = [n for n, addr in advertised.items() if addr.split(":")[0] in ("127.0.0.1", "localhost")]
    assert external, "no listener advertised for host access"
    for n in external:
        assert listeners[n].rsplit(":", 1)[-1] in published, f"host listener {n} is not published"


def test_compose_kafka_accepts_the_largest_frame(services, camcount_services):
    max_frame = Settings().inference.max_frame_bytes
    assert int(_env(services["kafka"])["KAFKA_MESSAGE_MAX_BYTES"]) > max_frame
    for name, svc in camcount_services.items():
        client = json.loads(_env(svc)["CAMCOUNT_KAFKA__CLIENT_CONFIG"])
        assert int(client["message.max.bytes"]) > max_frame, f"{name}: librdkafka would reject big frames"


def test_compose_clickhouse_and_redis_urls_match_their_services(services, camcount_services):
    ch_env = _env(services["clickhouse"])
    for name, svc in camcount_services.items():
        env = _env(svc)
        ch = urlparse(env["CLICKHOUSE_URL"])
        assert (ch.scheme, ch.hostname, ch.port) == ("clickhouse", "clickhouse", 9000), name
        assert ch.username == ch_env["CLICKHOUSE_USER"] and ch.password == ch_env["CLICKHOUSE_PASSWORD"], name
        assert ch.path.strip("/") == ch_env["CLICKHOUSE_DB"] == Settings().clickhouse.database, name
        redis = urlparse(env["REDIS_URL"])
        assert (redis.scheme, redis.hostname, redis.port) == ("redis", "redis", 6379), name


def test_compose_infer_reserves_an_nvidia_gpu(services):
    devices = services["infer"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(
        d.get("driver") == "nvidia" and d.get("count") == 1 and "gpu" in d.get("capabilities", []) for d in devices
    ), devices


def test_compose_infer_is_scalable(services):
    infer = services["infer"]
    assert "container_name" not in infer, "container_name prevents --scale infer=N"
    assert not infer.get("ports"), "a fixed host port prevents --scale infer=N; use expose"
    assert "replicas" not in infer.get("deploy", {}), "leave the replica count to --scale"


def test_compose_volumes_are_declared(compose, services):
    declared = set(compose.get("volumes") or {})
    for name, svc in services.items():
        for vol in svc.get("volumes", []):
            source = str(vol).split(":", 1)[0]
            if not source.startswith((".", "/", "$")):
                assert source in declared, f"{name} uses undeclared volume {source!r}"
    for data in ("kafka", "clickhouse", "redis", "prometheus", "grafana"):
        volumes = services[data].get("volumes", [])
        assert any(not str(v).startswith((".", "/")) for v in volumes), f"{data} has no data volume"


def test_compose_bind_mounted_config_files_exist(services):
    for name, svc in services.items():
        for vol in svc.get("volumes", []):
            source = str(vol).split(":", 1)[0]
            if source.startswith("./infra/"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"


def test_compose_count_reads_cameras_from_the_mounted_config_dir(services):
    count = services["count"]
    cameras = _env(count)["CAMCOUNT_COUNTING__CAMERAS"]
    mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in count["volumes"]}
    mount_point = str(Path(cameras).parent)
    assert mounts.get(mount_point) == "./config", f"{cameras} is not inside the ./config bind mount"
    local = ROOT / "config" / Path(cameras).name
    if local.exists():  # written by the counting app's owner; when present it must at least be YAML
        assert isinstance(_load_yaml(local), dict)


# ------------------------------------------------------------------------------------------------- prometheus
def test_prometheus_config_structure():
    _assert_prometheus_config_structure()


def test_prometheus_alert_rules_structure():
    _assert_alert_rules_structure()


def test_prometheus_config_and_rules_pass_promtool_or_structure_check():
    promtool = shutil.which("promtool")
    if promtool is None:
        # promtool is not installed by default: the structural checks are the fallback, asserted here.
        _assert_prometheus_config_structure()
        _assert_alert_rules_structure()
        return
    result = subprocess.run(
        [promtool, "check", "config", str(PROMETHEUS_DIR / "prometheus.yml")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_scrape_ports_match_service_ports(services):
    jobs = {job["job_name"]: job for job in _prometheus_config()["scrape_configs"]}
    infer_sd = jobs["camcount-infer"]["dns_sd_configs"]
    assert [(d["names"], d["port"]) for d in infer_sd] == [(["infer"], INFER_METRICS_PORT)]
    infer = services["infer"]
    assert int(_env(infer)["CAMCOUNT_INFERENCE__METRICS_PORT"]) == INFER_METRICS_PORT
    assert str(INFER_METRICS_PORT) in [str(p) for p in infer["expose"]]
    assert Settings().inference.metrics_port == INFER_METRICS_PORT

    count_targets = [t for sc in jobs["camcount-count"]["static_configs"] for t in sc["targets"]]
    assert count_targets == [f"count:{COUNT_WEB_PORT}"]
    count = services["count"]
    assert int(_env(count)["CAMCOUNT_COUNTING__WEB_PORT"]) == COUNT_WEB_PORT
    assert str(COUNT_WEB_PORT) in [str(p) for p in count["expose"]]
    assert Settings().counting.web_port == COUNT_WEB_PORT


def test_prometheus_scrape_targets_are_compose_services(services):
    for job in _prometheus_config()["scrape_configs"]:
        hosts = [t.split(":")[0] for sc in job.get("static_configs", []) for t in sc["targets"]]
        hosts += [n for d in job.get("dns_sd_configs", []) for n in d["names"]]
        for host in hosts:
            assert host in services or host == "localhost", f"{job['job_name']} scrapes unknown host {host}"


def test_prometheus_files_are_mounted_into_the_container(services):
    mounts = {str(v).split(":")[0]: str(v).split(":")[1] for v in services["prometheus"]["volumes"]}
    config_target = mounts["./infra/prometheus/prometheus.yml"]
    assert f"--config.file={config_target}" in services["prometheus"]["command"]
    for rule_file in _prometheus_config()["rule_files"]:
        assert mounts[f"./infra/prometheus/{rule_file}"] == str(Path(config_target).parent / rule_file)


def test_prometheus_alerts_use_only_exported_metrics():
    errors = [f"{r['alert']}: {e}" for r in _alert_rules() for e in _promql_metric_errors(r["expr"])]
    assert not errors, errors


def test_prometheus_alerts_cover_lag_dlq_and_worker_down():
    exprs = " ".join(r["expr"] for r in _alert_rules())
    needles = ("camcount_consumer_lag", "camcount_dead_letters_total", 'up{job="camcount-infer"}',
               'up{job="camcount-count"}')
    for needle in needles:
        assert needle in exprs, f"no alert on {needle}"
    jobs = {job["job_name"] for job in _prometheus_config()["scrape_configs"]}
    for job in re.findall(r'up\{job="([^"]+)"\}', exprs):
        assert job in jobs, f"alert on unknown job {job}"


# ------------------------------------------------------------------------------------------------- grafana
def test_grafana_dashboard_is_valid_json_with_unique_panel_ids(dashboard):
    panels = _panels(dashboard)
    assert dashboard["uid"] and dashboard["title"] and panels
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for p in panels:
        assert {"h", "w", "x", "y"} <= set(p["gridPos"]) and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24, p["title"]


def test_grafana_dashboard_queries_only_exported_metrics(dashboard):
    exprs = _prom_exprs(dashboard)
    assert exprs
    errors = [f"{e!r}: {err}" for e in exprs for err in _promql_metric_errors(e)]
    assert not errors, errors


def test_metric_names_the_configs_are_checked_against_are_the_ones_the_processes_export():
    from stream_apps.counting_app import CountingMetrics
    from stream_apps.inference.metrics import InferenceMetrics, LoadedModelsCollector

    inference = InferenceMetrics()
    inference.registry.register(LoadedModelsCollector(lambda: []))
    exported = {}
    for registry in (inference.registry, CountingMetrics().registry):
        for family in registry.collect():
            exported[family.name + ("_total" if family.type == "counter" else "")] = family.type

    assert exported == {name: kind for name, (kind, _) in METRICS.items()}


def test_grafana_dashboard_has_required_panels(dashboard):
    exprs = " ".join(_prom_exprs(dashboard))
    required = {
        "frames/s": "rate(camcount_inference_frames_total",
        "batch size": "camcount_inference_batch_size_",
        "consumer lag": "camcount_consumer_lag",
        "DLQ rate": "rate(camcount_dead_letters_total",
        "loaded models": "camcount_model_info",
    }
    for stage in ("queue", "preprocess", "compute", "postprocess", "publish", "e2e"):
        required[f"{stage} latency"] = f"camcount_inference_{stage}_seconds_bucket"
    missing = [what for what, needle in required.items() if needle not in exprs]
    assert not missing, missing


def test_grafana_dashboard_datasources_are_provisioned(dashboard):
    provisioned = _load_yaml(GRAFANA_DIR / "provisioning" / "datasources" / "datasources.yml")["datasources"]
    by_uid = {ds["uid"]: ds["type"] for ds in provisioned}
    used = [p["datasource"] for p in _panels(dashboard) if "datasource" in p]
    used += [t["datasource"] for p in _panels(dashboard) for t in p.get("targets", []) if "datasource" in t]
    for ds in used:
        assert by_uid.get(ds["uid"]) == ds["type"], f"dashboard uses unprovisioned datasource {ds}"
    prom = next(ds for ds in provisioned if ds["type"] == "prometheus")
    assert urlparse(prom["url"]).port == 9090 and urlparse(prom["url"]).hostname == "prometheus"


def test_grafana_clickhouse_queries_use_tables_from_ddl(dashboard):
    ddl = " ".join(p.read_text() for p in DDL_DIR.glob("*.sql"))
    tables = set(re.findall(r"CREATE (?:TABLE|VIEW|MATERIALIZED VIEW) IF NOT EXISTS (\w+)", ddl))
    sqls = [t["rawSql"] for p in _panels(dashboard) for t in p.get("targets", []) if "rawSql" in t]
    for sql in sqls:
        for db, table in re.findall(r"\bFROM\s+(?:(\w+)\.)?(\w+)", sql):
            assert table in tables, f"ClickHouse panel queries unknown table {table}"
            assert db in ("", Settings().clickhouse.database)


def test_grafana_provisioning_paths_match_compose_mounts(services):
    mounts = {str(v).split(":")[0]: str(v).split(":")[1] for v in services["grafana"]["volumes"]}
    assert mounts["./infra/grafana/provisioning"] == "/etc/grafana/provisioning"
    providers = _load_yaml(GRAFANA_DIR / "provisioning" / "dashboards" / "dashboards.yml")["providers"]
    assert [p["options"]["path"] for p in providers] == [mounts["./infra/grafana/dashboards"]]
    plugins = _env(services["grafana"]).get("GF_PLUGINS_PREINSTALL", "")
    provisioned = _load_yaml(GRAFANA_DIR / "provisioning" / "datasources" / "datasources.yml")["datasources"]
    for ds in provisioned:
        if ds["type"] not in ("prometheus",):
            assert ds["type"] in plugins.split(","), f"datasource plugin {ds['type']} is not installed"


# ------------------------------------------------------------------------------------------------- dockerfile
def test_dockerfile_runs_camcount_as_non_root():
    text = DOCKERFILE.read_text()
    final = text[text.rindex("\nFROM "):]
    assert re.search(r'^ENTRYPOINT \["camcount"\]$', final, re.M)
    user = re.findall(r"^USER (\S+)$", final, re.M)
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim$", text, re.M)


def test_dockerfile_bakes_the_default_model_into_the_runtime_registry(services):
    text = DOCKERFILE.read_text()
    assert re.search(r"^RUN camcount models import-darknet --default$", text, re.M)
    registries = set(re.findall(r"CAMCOUNT_MODEL__REGISTRY=(\S+)", text))
    assert len(registries) == 1, registries
    (registry,) = registries
    assert re.search(rf"COPY --from=models .*{re.escape(registry)} {re.escape(registry)}$", text, re.M)
    assert _env(services["infer"])["CAMCOUNT_MODEL__REGISTRY"] == registry


def test_dockerfile_ships_the_clickhouse_ddl():
    text = DOCKERFILE.read_text()
    assert re.search(r"^COPY (--from=build /src/)?infra/clickhouse /app/infra/clickhouse$", text, re.M)
    assert re.search(r"^WORKDIR /app$", text, re.M), "the DDL is found at infra/clickhouse relative to /app"
    assert sorted(p.name for p in DDL_DIR.glob("*.sql")), "no DDL to ship"
    # the installed package looks for it at camcount.stack.CLICKHOUSE_DDL_DIR (next to site-packages)
    assert "import camcount.stack as s; print(s.CLICKHOUSE_DDL_DIR)" in text
    assert 'cp /src/infra/clickhouse/*.sql "$ddl/"' in text


def test_dockerfile_env_var_names_are_settings_fields():
    names = re.findall(r"\b(CAMCOUNT_\w+)=", DOCKERFILE.read_text())
    assert names
    errors = [err for n in names if (err := _field_path_error(n))]
    assert not errors, errors


def test_dockerignore_keeps_build_inputs_and_drops_local_state():
    lines = DOCKERIGNORE.read_text().splitlines()
    ignored = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    assert {".venv", ".camcount", ".git"} <= ignored
    for needed in ("pyproject.toml", "camcount", "infra/clickhouse", "config", "README.md"):
        assert needed not in ignored and "infra" not in ignored


# ------------------------------------------------------------------------------------------------- kubernetes
def test_k8s_documents_have_kind_and_metadata(k8s_docs):
    for doc in k8s_docs:
        assert doc.get("apiVersion") and doc.get("kind"), doc["__file__"]
        assert doc.get("metadata", {}).get("name"), f"{doc['__file__']}: {doc['kind']} without metadata.name"


def test_k8s_namespaced_objects_live_in_camcount_namespace(k8s_docs):
    for doc in k8s_docs:
        if doc["kind"] not in ("Namespace", "Kustomization"):
            assert doc["metadata"].get("namespace") == "camcount", f"{doc['kind']}/{doc['metadata']['name']}"


def test_k8s_kustomization_lists_every_manifest(k8s_docs):
    kustomization = _k8s(k8s_docs, "Kustomization", "camcount")
    files = {p.name for p in K8S_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


def test_k8s_commands_are_real_camcount_subcommands(k8s_docs):
    for owner, container, _ in _containers(k8s_docs):
        assert "command" not in container, f"{owner}: keep the image ENTRYPOINT (camcount); set args"
        error = _check_subcommand([str(a) for a in container["args"]])
        assert error is None, f"{owner}: {error}"


def test_k8s_env_var_names_are_settings_fields(k8s_docs):
    errors = [
        f"{owner}: {err}"
        for owner, container, _ in _containers(k8s_docs)
        for name in _k8s_env(k8s_docs, container)
        if (err := _field_path_error(name))
    ]
    assert not errors, errors


def test_k8s_env_and_settings_yaml_build_valid_settings(k8s_docs, monkeypatch, tmp_path):
    for owner, container, pod in _containers(k8s_docs):
        env = _k8s_env(k8s_docs, container)
        yaml_text = _mounted_file(k8s_docs, pod, container, env["CAMCOUNT_CONFIG"])
        assert yaml_text is not None, (
            f"{owner}: CAMCOUNT_CONFIG {env['CAMCOUNT_CONFIG']} is not a mounted ConfigMap key")
        settings_file = tmp_path / "settings.yaml"
        settings_file.write_text(yaml_text)
        env["CAMCOUNT_CONFIG"] = str(settings_file)
        with monkeypatch.context() as m:
            settings = _settings_from_env(m, env)
        assert settings.kafka.bootstrap_servers and settings.clickhouse.url and settings.redis.url, owner
        cameras = settings.counting.cameras
        assert _mounted_file(k8s_docs, pod, container, cameras) is not None or container["args"][0] != "count", (
            f"{owner}: camera config {cameras} is not mounted"
        )


def test_k8s_camera_config_is_valid_for_the_counting_app(k8s_docs):
    from counting.config import parse_camera_configs

    text = _k8s(k8s_docs, "ConfigMap", "camcount-config")["data"]["cameras.yaml"]
    configs = parse_camera_configs(yaml.safe_load(text), "configmap.yaml:cameras.yaml")
    assert configs.cameras and all(c.lines for c in configs.cameras.values())
    ingest_cameras = [c["args"][c["args"].index("--camera-id") + 1]
                      for _, c, _ in _containers(k8s_docs) if c["args"][0] == "ingest"]
    for camera in ingest_cameras:
        assert configs.for_camera(camera).lines, f"ingested camera {camera} has no counting lines"


def test_k8s_init_job_runs_stack_up(k8s_docs):
    job = _k8s(k8s_docs, "Job", "camcount-init")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["stack", "up"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("OnFailure", "Never")


def test_k8s_infer_has_gpu_limit_and_static_membership(k8s_docs):
    infer = _k8s(k8s_docs, "StatefulSet", "infer")
    (container,) = infer["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    env = {e["name"]: e for e in container["env"]}
    ref = env["CAMCOUNT_INFERENCE__GROUP_INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert ref == "metadata.name", "group.instance.id must be the stable pod name"
    assert _field_path_error("CAMCOUNT_INFERENCE__GROUP_INSTANCE_ID") is None
    assert infer["spec"]["serviceName"] == _k8s(k8s_docs, "Service", "infer")["metadata"]["name"]


def test_k8s_infer_probes_health_endpoints_on_metrics_port(k8s_docs):
    infer = _k8s(k8s_docs, "StatefulSet", "infer")
    (container,) = infer["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == INFER_METRICS_PORT
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
        get = container[probe]["httpGet"]
        assert get["path"] == path and ports.get(get["port"], get["port"]) == INFER_METRICS_PORT, probe


def test_k8s_count_probes_its_web_port(k8s_docs):
    count = _k8s(k8s_docs, "Deployment", "count")
    (container,) = count["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["web"] == COUNT_WEB_PORT
    for probe in ("livenessProbe", "readinessProbe"):
        handler = container[probe].get("httpGet") or container[probe].get("tcpSocket")
        assert ports.get(handler["port"], handler["port"]) == COUNT_WEB_PORT, probe


def test_k8s_hpa_scales_infer_on_frames_consumer_lag(k8s_docs):
    hpa = _k8s(k8s_docs, "HorizontalPodAutoscaler", "infer")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "infer"}
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "External"
    assert metric["external"]["metric"]["name"] == "camcount_consumer_lag"
    assert metric["external"]["metric"]["selector"]["matchLabels"] == {"topic": "frames"}
    settings_yaml = yaml.safe_load(_k8s(k8s_docs, "ConfigMap", "camcount-config")["data"]["settings.yaml"])
    assert hpa["spec"]["maxReplicas"] <= settings_yaml["kafka"]["partitions"], "more workers than partitions sit idle"
    assert "prometheus-adapter" in (K8S_DIR / k8s_docs[k8s_docs.index(hpa)]["__file__"]).read_text()


def test_k8s_services_select_pods_and_annotate_scrape_ports(k8s_docs):
    workloads = {d["metadata"]["name"]: d for d in k8s_docs if d["kind"] in ("Deployment", "StatefulSet")}
    for svc in (d for d in k8s_docs if d["kind"] == "Service"):
        name = svc["metadata"]["name"]
        template = workloads[name]["spec"]["template"]
        assert svc["spec"]["selector"].items() <= template["metadata"]["labels"].items(), name
        assert workloads[name]["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
        annotated = int(template["metadata"]["annotations"]["prometheus.io/port"])
        container_ports = [p["containerPort"] for c in template["spec"]["containers"] for p in c["ports"]]
        assert annotated in container_ports and annotated in [p["port"] for p in svc["spec"]["ports"]], name
        assert annotated == {"infer": INFER_METRICS_PORT, "count": COUNT_WEB_PORT}[name]


def test_k8s_pods_run_as_the_image_user(k8s_docs):
    uid = int(re.search(r"--uid (\d+)", DOCKERFILE.read_text()).group(1))
    for owner, spec in _pod_specs(k8s_docs):
        ctx = spec["securityContext"]
        assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] == uid, owner
