"""docker-compose.yml: services, dependencies, commands, environment, listeners, volumes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from foundation.settings import Settings
from tests.infra.deploy_helpers import (
    ROOT,
    _check_subcommand,
    _env,
    _field_path_error,
    _load_yaml,
    _settings_from_env,
)


def _depends_on(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {d: {"condition": "service_started"} for d in deps}
    return deps


def _command(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command")
    assert cmd is not None, "camcount service without a command"
    return cmd.split() if isinstance(cmd, str) else [str(c) for c in cmd]


def test_compose_depends_on_only_names_existing_services(services):
    for name, svc in services.items():
        for dep in _depends_on(svc):
            assert dep in services, f"{name} depends on unknown service {dep!r}"


def test_compose_service_healthy_dependencies_have_healthchecks(services):
    for name, svc in services.items():
        for dep, cond in _depends_on(svc).items():
            if cond.get("condition") == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy; {dep} has no healthcheck"


def test_compose_init_runs_provision_after_data_services_are_healthy(services):
    init = services["camcount-init"]
    assert _command(init) == ["provision"]
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
    assert {"provision", "ingest", "infer", "count"} <= roles, roles


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
                f"{name}: all three service addresses must be set so `provision` creates the topics and applies "
                "the DDL on these services (and `stack up` would start nothing)"
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
