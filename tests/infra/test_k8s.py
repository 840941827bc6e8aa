"""infra/k8s: the manifests, their commands and environment, probes, autoscaling and security context."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.infra.deploy_helpers import (
    API_PORT,
    COUNT_WEB_PORT,
    DOCKERFILE,
    INFER_METRICS_PORT,
    MONITOR_METRICS_PORT,
    ROOT,
    _check_subcommand,
    _field_path_error,
    _settings_from_env,
)

K8S_DIR = ROOT / "infra" / "k8s"
ALERTMANAGER_PORT = 9093


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


def _is_camcount_container(container: dict[str, Any]) -> bool:
    return str(container["image"]).split("/")[-1].split(":")[0] == "camcount"


def _containers(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """The camcount containers (the image's ENTRYPOINT is camcount); third-party ones such as Alertmanager aside."""
    return [(f"{owner}/{c['name']}", c, spec) for owner, spec in _pod_specs(docs) for c in spec["containers"]
            if _is_camcount_container(c)]


def _mounted_file(docs: list[dict[str, Any]], pod: dict[str, Any], container: dict[str, Any], path: str) -> str | None:
    """Content of ``path`` if it comes from a ConfigMap volume mounted in the container."""
    for mount in container.get("volumeMounts", []):
        prefix = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(prefix):
            volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
            if "configMap" in volume:
                return _k8s(docs, "ConfigMap", volume["configMap"]["name"])["data"].get(path[len(prefix):])
    return None


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


def test_k8s_init_job_runs_provision(k8s_docs):
    job = _k8s(k8s_docs, "Job", "camcount-init")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["provision"]
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
        assert annotated == {"infer": INFER_METRICS_PORT, "count": COUNT_WEB_PORT, "api": API_PORT,
                             "monitor": MONITOR_METRICS_PORT, "alertmanager": ALERTMANAGER_PORT}[name]


def test_k8s_pods_run_as_the_image_user(k8s_docs):
    uid = int(re.search(r"--uid (\d+)", DOCKERFILE.read_text()).group(1))
    for owner, spec in _pod_specs(k8s_docs):
        if not any(_is_camcount_container(c) for c in spec["containers"]):
            continue  # third-party images run as their own user (Alertmanager: nobody, 65534)
        ctx = spec["securityContext"]
        assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] == uid, owner
