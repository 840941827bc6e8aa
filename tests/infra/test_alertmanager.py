"""infra/alertmanager: the config template rendered from the environment (render-config.sh, run with the POSIX sh
the Alertmanager image's busybox provides an equivalent of), checked with `amtool check-config` and its routes with
`amtool config routes test`; the compose service and the Kubernetes manifests that run it."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.infra.alert_tools import run_tool
from tests.infra.deploy_helpers import ROOT, _env, _load_yaml

ALERTMANAGER_DIR = ROOT / "infra" / "alertmanager"
TEMPLATE = ALERTMANAGER_DIR / "alertmanager.yml.tmpl"
RENDER = ALERTMANAGER_DIR / "render-config.sh"
K8S_FILE = ROOT / "infra" / "k8s" / "alertmanager.yaml"
SECRET_FILES = ("slack_webhook_url", "pagerduty_routing_key", "smtp_password")
DEFAULT_SECRETS_DIR = "/etc/alertmanager/secrets"


def _settings_the_script_reads() -> list[str]:
    loop = re.search(r"for name in (.*?); do", RENDER.read_text(), re.S)
    assert loop, "render-config.sh: the loop over the settings it substitutes"
    return loop.group(1).replace("\\\n", " ").split()


def _render(tmp_path: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ALERTMANAGER_")}
    return subprocess.run(["sh", str(RENDER), str(TEMPLATE), str(tmp_path / "alertmanager.yml"), *extra],
                          env=clean | env, capture_output=True, text=True, timeout=30)


def _integrations(config: dict[str, Any]) -> dict[str, set[str]]:
    return {r["name"]: {k for k in r if k.endswith("_configs")} for r in config["receivers"]}


def _amtool_check(path: Path) -> None:
    result = run_tool("amtool", "check-config", path)
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr


def _route(path: Path, *labels: str) -> str:
    result = run_tool("amtool", "config", "routes", "test", f"--config.file={path}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


@pytest.fixture
def secrets(tmp_path: Path) -> Path:
    directory = tmp_path / "secrets"
    directory.mkdir()
    (directory / "slack_webhook_url").write_text("https://hooks.slack.com/services/T000/B000/XXXX\n")
    (directory / "pagerduty_routing_key").write_text("R0UT1NGK3Y\n")
    (directory / "smtp_password").write_text("s3cret\n")
    return directory


def test_with_nothing_configured_the_config_is_valid_and_every_channel_is_off(tmp_path):
    result = _render(tmp_path, {})
    assert result.returncode == 0, result.stderr
    for channel in ("pagerduty", "slack", "email"):
        assert f"{channel} disabled" in result.stderr
    rendered = tmp_path / "alertmanager.yml"
    _amtool_check(rendered)
    config = yaml.safe_load(rendered.read_text())
    assert _integrations(config) == {"critical": set(), "warning": set(), "info": set()}
    assert not list(tmp_path.glob("alertmanager.yml.*")), "temporary files left behind"


def test_every_channel_from_secret_files_and_environment_routes_by_severity(tmp_path, secrets):
    env = {
        "ALERTMANAGER_SECRETS_DIR": str(secrets),
        "ALERTMANAGER_SLACK_CHANNEL": "#camcount-oncall",
        "ALERTMANAGER_EMAIL_TO": "ops@example.com, o'neil&co@example.com",  # a quote, an ampersand
        "ALERTMANAGER_EMAIL_FROM": "alerts@example.com",
        "ALERTMANAGER_SMTP_SMARTHOST": "smtp.example.com:587",
        "ALERTMANAGER_SMTP_USERNAME": r"svc|alerts\x",  # sed's delimiter and a backslash
        "ALERTMANAGER_SMTP_REQUIRE_TLS": "false",
    }
    result = _render(tmp_path, env)
    assert result.returncode == 0, result.stderr
    rendered = tmp_path / "alertmanager.yml"
    _amtool_check(rendered)
    text = rendered.read_text()
    for name in SECRET_FILES:
        assert (secrets / name).read_text().strip() not in text, f"the {name} secret leaked into the config"
    config = yaml.safe_load(text)
    assert _integrations(config) == {"critical": {"pagerduty_configs", "slack_configs"},
                                     "warning": {"slack_configs", "email_configs"}, "info": set()}
    receivers = {r["name"]: r for r in config["receivers"]}
    assert receivers["critical"]["pagerduty_configs"][0]["routing_key_file"] == str(secrets / "pagerduty_routing_key")
    for name in ("critical", "warning"):
        slack = receivers[name]["slack_configs"][0]
        assert slack["api_url_file"] == str(secrets / "slack_webhook_url")
        assert slack["channel"] == "#camcount-oncall"
    email = receivers["warning"]["email_configs"][0]
    assert (email["to"], email["from"], email["smarthost"]) == (env["ALERTMANAGER_EMAIL_TO"], "alerts@example.com",
                                                               "smtp.example.com:587")
    assert email["auth_username"] == env["ALERTMANAGER_SMTP_USERNAME"]
    assert email["auth_password_file"] == str(secrets / "smtp_password")
    assert email["require_tls"] is False

    assert _route(rendered, "alertname=CamcountThroughputLow", "severity=critical") == "critical"
    assert _route(rendered, "alertname=CamcountGpuMemoryHigh", "severity=warning") == "warning"
    assert _route(rendered, "alertname=Something", "severity=info") == "info"
    assert _route(rendered, "alertname=Something") == "warning"


def test_email_without_a_password_file_is_an_unauthenticated_relay(tmp_path, secrets):
    (secrets / "smtp_password").unlink()
    (secrets / "pagerduty_routing_key").write_text("")  # empty: off
    env = {"ALERTMANAGER_SECRETS_DIR": str(secrets), "ALERTMANAGER_EMAIL_TO": "ops@example.com",
           "ALERTMANAGER_SMTP_SMARTHOST": "relay.internal:25"}
    result = _render(tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert "pagerduty disabled" in result.stderr and "smtp-auth disabled" in result.stderr
    _amtool_check(tmp_path / "alertmanager.yml")
    config = yaml.safe_load((tmp_path / "alertmanager.yml").read_text())
    assert _integrations(config)["critical"] == {"slack_configs"}
    email = next(r for r in config["receivers"] if r["name"] == "warning")["email_configs"][0]
    assert "auth_username" not in email and "auth_password_file" not in email and email["require_tls"] is True


@pytest.mark.parametrize("env, error", [
    ({"ALERTMANAGER_SMTP_REQUIRE_TLS": "yes"}, "must be true or false"),
    ({"ALERTMANAGER_SMTP_SMARTHOST": "smtp.example.com"}, "must be host:port"),
    ({"ALERTMANAGER_SLACK_CHANNEL": "#a\nglobal: {}"}, "holds a line break"),
])
def test_unusable_settings_stop_the_start_with_a_message(tmp_path, env, error):
    result = _render(tmp_path, env, "sh", "-c", "echo started")
    assert result.returncode != 0 and error in result.stderr, result.stderr
    assert "started" not in result.stdout and not (tmp_path / "alertmanager.yml").exists()


def test_after_rendering_the_command_runs(tmp_path):
    result = _render(tmp_path, {}, "sh", "-c", 'echo "running with $0"', "ok")
    assert result.returncode == 0 and result.stdout.strip() == "running with ok", result.stdout + result.stderr
    assert (tmp_path / "alertmanager.yml").is_file() and not list(tmp_path.glob("alertmanager.yml.*"))


def test_every_placeholder_of_the_template_is_a_setting_the_script_fills():
    placeholders = set(re.findall(r"\$\{(ALERTMANAGER_[A-Z_]+)\}", TEMPLATE.read_text()))
    assert placeholders and placeholders <= set(_settings_the_script_reads())


def test_inhibition_pairs_a_critical_and_a_warning_alert_per_signal():
    (rule,) = yaml.safe_load(TEMPLATE.read_text())["inhibit_rules"]
    assert rule["equal"] == ["signal"]
    assert 'signal=~".+"' in rule["source_matchers"] and 'signal=~".+"' in rule["target_matchers"]
    alerts = [r for g in _load_yaml(ROOT / "infra" / "prometheus" / "alerts.yml")["groups"] for r in g["rules"]
              if "alert" in r]
    signals: dict[str, set[str]] = {}
    for alert in alerts:
        if "signal" in alert["labels"]:
            signals.setdefault(alert["labels"]["signal"], set()).add(alert["labels"]["severity"])
    assert signals and all(sev == {"critical", "warning"} for sev in signals.values()), signals


def test_the_docs_name_every_setting_and_secret_file():
    docs = (ROOT / "docs" / "observability.md").read_text()
    for name in (*_settings_the_script_reads(), *SECRET_FILES):
        assert f"`{name}`" in docs, f"docs/observability.md does not describe {name}"


# ------------------------------------------------------------------------------------------------ compose


def test_compose_alertmanager_renders_the_mounted_template_and_runs_on_the_result(services):
    am = services["alertmanager"]
    entrypoint, command = am["entrypoint"], am["command"]
    assert entrypoint[:2] == ["/bin/sh", "/etc/alertmanager/render-config.sh"]
    template, output = entrypoint[2:]
    mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in am["volumes"] if str(v).startswith("./")}
    assert mounts[template] == "./infra/alertmanager/alertmanager.yml.tmpl"
    assert mounts[entrypoint[1]] == "./infra/alertmanager/render-config.sh"
    assert command[0] == "/bin/alertmanager" and f"--config.file={output}" in command
    storage = next(c.split("=", 1)[1] for c in command if c.startswith("--storage.path="))
    assert output.startswith(storage.rstrip("/") + "/"), "render into the writable data volume"
    assert any(str(v).startswith("alertmanager-data:" + storage) for v in am["volumes"])
    secrets = [v for v in am["volumes"] if "ALERTMANAGER_SECRETS_DIR" in str(v)]
    assert [str(v).rsplit(":", 2)[-2:] for v in secrets] == [[DEFAULT_SECRETS_DIR, "ro"]]
    assert (ROOT / "infra" / "alertmanager" / "secrets").is_dir()
    env = _env(am)
    assert set(env) <= set(_settings_the_script_reads()) - {"ALERTMANAGER_SECRETS_DIR"}, (
        "the container's ALERTMANAGER_SECRETS_DIR is the mount point; the host path is only for the bind mount")
    assert any(str(p).endswith(":9093") for p in am["ports"])


def test_compose_secret_files_are_not_committed():
    ignore = (ALERTMANAGER_DIR / "secrets" / ".gitignore").read_text().split()
    assert "*" in ignore
    for name in SECRET_FILES:
        result = subprocess.run(["git", "check-ignore", "-q", f"infra/alertmanager/secrets/{name}"], cwd=ROOT)
        assert result.returncode == 0, f"{name} would be committed"


# ------------------------------------------------------------------------------------------------ Kubernetes


@pytest.fixture(scope="module")
def k8s() -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(K8S_FILE.read_text())}


def test_k8s_configmap_holds_the_template_and_script_of_infra_alertmanager(k8s):
    data = k8s["ConfigMap"]["data"]
    for path in (TEMPLATE, RENDER):
        assert data[path.name] == path.read_text(), (
            f"{K8S_FILE.name}: the ConfigMap's {path.name} differs from infra/alertmanager/{path.name}; copy it")


def test_k8s_deployment_renders_from_the_configmap_with_secret_files_and_runs_alertmanager(k8s, services):
    spec = k8s["Deployment"]["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["image"] == services["alertmanager"]["image"], "compose and Kubernetes run the same version"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    shell, script, template, output = container["command"]
    assert shell == "/bin/sh"
    config_dir = str(Path(script).parent)
    assert volumes[mounts[config_dir]]["configMap"]["name"] == k8s["ConfigMap"]["metadata"]["name"]
    assert {Path(script).name, Path(template).name} <= set(k8s["ConfigMap"]["data"])
    args = container["args"]
    assert args[0] == "/bin/alertmanager" and f"--config.file={output}" in args
    storage = next(a.split("=", 1)[1] for a in args if a.startswith("--storage.path="))
    assert output.startswith(storage.rstrip("/") + "/") and "emptyDir" in volumes[mounts[storage]]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert set(env) <= set(_settings_the_script_reads())
    secret = volumes[mounts[env["ALERTMANAGER_SECRETS_DIR"]]]["secret"]
    assert secret["optional"] is True, "no Secret: channels off, Alertmanager still starts"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["securityContext"]["runAsUser"] == 65534
    port = next(p["containerPort"] for p in container["ports"] if p["name"] == "http")
    assert port == 9093 and container["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    service_ports = [p["port"] for p in k8s["Service"]["spec"]["ports"]]
    assert service_ports == [port]
