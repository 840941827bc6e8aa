"""infra/prometheus: scrape config and alert rules, against the compose services and the exported metrics."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from foundation.settings import Settings
from tests.infra.deploy_helpers import (
    COUNT_WEB_PORT,
    INFER_METRICS_PORT,
    ROOT,
    _env,
    _load_yaml,
    _promql_metric_errors,
)

PROMETHEUS_DIR = ROOT / "infra" / "prometheus"


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
