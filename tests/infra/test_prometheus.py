"""infra/prometheus: scrape config and alert rules, against the compose services and the exported metrics, and
the rules' promtool unit tests (alerts.test.yml)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from foundation.settings import Settings
from tests.infra.alert_tools import run_tool
from tests.infra.deploy_helpers import (
    COUNT_WEB_PORT,
    INFER_METRICS_PORT,
    METRICS,
    MONITOR_METRICS_PORT,
    ROOT,
    _env,
    _load_yaml,
    _promql_metric_errors,
)

PROMETHEUS_DIR = ROOT / "infra" / "prometheus"
RULE_TESTS = PROMETHEUS_DIR / "alerts.test.yml"

# Metrics an alert rule may use before any camcount process exports them (METRICS lists only what is exported,
# and a test checks that against the processes). Remove an entry once its metric is in METRICS.
PENDING_METRICS: dict[str, tuple[str, set[str]]] = {}
# Alerts on another program's metrics, which METRICS does not describe.
THIRD_PARTY_ALERTS = {
    "CamcountAlertDeliveryFailing": "alertmanager_notifications_failed_total{integration}: Alertmanager's own",
}
# The system description's thresholds (issue 14): alert -> (for, comparison in its expression).
DESCRIPTION_THRESHOLDS = {
    "CamcountEndToEndLatencyHigh": ("1m", "> 0.1"),  # high latency: 100 ms for 60 s
    "CamcountInferenceComputeSlow": ("1m", "> 0.1"),
    "CamcountThroughputLow": ("30s", "< 25"),  # low throughput: 25 frames/s for 30 s
    "CamcountProcessCpuHigh": ("5m", "> 0.8"),  # resource use above 80 % for 5 minutes
    "CamcountProcessMemoryHigh": ("5m", "> 0.8"),
    "CamcountGpuUtilizationHigh": ("5m", "> 0.8"),
    "CamcountGpuMemoryHigh": ("5m", "> 0.8"),
    "CamcountModelAccuracyLow": ("10m", "< 0.85"),  # accuracy under 85 % for 10 minutes
    "CamcountErrorsAboveThreshold": (None, "> 10"),  # error threshold of 10 (in 5 minutes)
}


def _prometheus_config() -> dict[str, Any]:
    return _load_yaml(PROMETHEUS_DIR / "prometheus.yml")


def _rule_groups() -> list[dict[str, Any]]:
    return _load_yaml(PROMETHEUS_DIR / "alerts.yml")["groups"]


def _alert_rules() -> list[dict[str, Any]]:
    return [rule for group in _rule_groups() for rule in group["rules"] if "alert" in rule]


def _recording_rules() -> list[dict[str, Any]]:
    return [rule for group in _rule_groups() for rule in group["rules"] if "record" in rule]


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
            if "record" in rule:
                assert set(rule) <= {"record", "expr", "labels"}, rule
                assert re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", rule["record"]), (
                    f"{rule['record']}: name recording rules level:metric:operations")
                assert isinstance(rule["expr"], str) and rule["expr"].count("(") == rule["expr"].count(")")
                continue
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


def test_promtool_checks_the_config_and_the_rules():
    config = run_tool("promtool", "check", "config", PROMETHEUS_DIR / "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr
    rules = run_tool("promtool", "check", "rules", PROMETHEUS_DIR / "alerts.yml")
    assert rules.returncode == 0, rules.stdout + rules.stderr


def test_promtool_unit_tests_of_the_rules_pass():
    result = run_tool("promtool", "test", "rules", RULE_TESTS.name, cwd=PROMETHEUS_DIR)
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr


def _rule_tests() -> dict[str, Any]:
    return _load_yaml(RULE_TESTS)


def test_every_alert_has_a_promtool_case_where_it_fires_and_one_where_it_does_not():
    doc = _rule_tests()
    assert doc["rule_files"] == ["alerts.yml"]
    cases = [case for test in doc["tests"] for case in test.get("alert_rule_test", [])]
    missing = []
    for name in sorted(rule["alert"] for rule in _alert_rules()):
        mine = [case for case in cases if case["alertname"] == name]
        firing = [case for case in mine if case.get("exp_alerts")]
        quiet = [case for case in mine if not case.get("exp_alerts")]
        if not firing or not quiet:
            missing.append(f"{name}: {len(firing)} firing and {len(quiet)} quiet cases")
        for case in firing:
            for alert in case["exp_alerts"]:
                assert alert.get("exp_annotations", {}).get("summary"), f"{name}: check the rendered annotations"
                assert "severity" in alert.get("exp_labels", {}), f"{name}: check the severity label"
    assert not missing, f"every alert in alerts.yml needs cases in {RULE_TESTS.name}: {missing}"
    unknown = {case["alertname"] for case in cases} - {rule["alert"] for rule in _alert_rules()}
    assert not unknown, f"cases for alerts that alerts.yml does not have: {unknown}"


def test_every_recording_rule_has_a_promtool_expression_case():
    tested = " ".join(case["expr"] for test in _rule_tests()["tests"] for case in test.get("promql_expr_test", []))
    untested = [rule["record"] for rule in _recording_rules() if rule["record"] not in tested]
    assert not untested, f"recording rules without a promql_expr_test in {RULE_TESTS.name}: {untested}"


def test_promtool_evaluates_every_group_recording_rules_first():
    order = _rule_tests()["group_eval_order"]
    groups = [group["name"] for group in _rule_groups()]
    assert sorted(order) == sorted(groups), "group_eval_order must list every group of alerts.yml"
    recording = [g["name"] for g in _rule_groups() if any("record" in r for r in g["rules"])]
    assert order[: len(recording)] == recording and all(
        all("record" in r for r in g["rules"]) for g in _rule_groups() if g["name"] in recording
    ), "recording rules live in their own groups, evaluated before the alerts that read them"


def test_alerts_carry_the_system_descriptions_thresholds():
    rules = {rule["alert"]: rule for rule in _alert_rules()}
    for name, (hold, comparison) in DESCRIPTION_THRESHOLDS.items():
        rule = rules[name]
        assert rule.get("for") == hold, f"{name}: for {rule.get('for')}, the description says {hold}"
        assert comparison in " ".join(rule["expr"].split()), f"{name}: {rule['expr']!r} lacks {comparison!r}"


def test_alert_severities_route_in_alertmanager():
    severities = {rule["labels"]["severity"] for rule in _alert_rules()}
    assert severities <= {"critical", "warning", "info"}
    critical = {rule["alert"] for rule in _alert_rules() if rule["labels"]["severity"] == "critical"}
    assert {"CamcountInferWorkerDown", "CamcountThroughputLow", "CamcountEndToEndLatencyCritical"} <= critical


def test_prometheus_sends_alerts_to_the_compose_alertmanager(services):
    targets = [t for am in _prometheus_config()["alerting"]["alertmanagers"]
               for sc in am["static_configs"] for t in sc["targets"]]
    assert targets == ["alertmanager:9093"]
    assert "alertmanager" in services
    jobs = {job["job_name"]: job for job in _prometheus_config()["scrape_configs"]}
    assert [t for sc in jobs["alertmanager"]["static_configs"] for t in sc["targets"]] == targets


def test_prometheus_scrape_ports_match_service_ports(services):
    jobs = {job["job_name"]: job for job in _prometheus_config()["scrape_configs"]}
    infer_sd = jobs["camcount-infer"]["dns_sd_configs"]
    assert [(d["names"], d["port"]) for d in infer_sd] == [(["infer"], INFER_METRICS_PORT)]
    infer = services["infer"]
    assert int(_env(infer)["CAMCOUNT_INFERENCE__METRICS_PORT"]) == INFER_METRICS_PORT
    assert str(INFER_METRICS_PORT) in [str(p) for p in infer["expose"]]
    assert Settings().inference.metrics_port == INFER_METRICS_PORT

    monitor_targets = [t for sc in jobs["camcount-monitor"]["static_configs"] for t in sc["targets"]]
    assert monitor_targets == [f"monitor:{MONITOR_METRICS_PORT}"]
    assert int(_env(services["monitor"])["CAMCOUNT_MONITOR__METRICS_PORT"]) == MONITOR_METRICS_PORT
    assert str(MONITOR_METRICS_PORT) in [str(p) for p in services["monitor"]["expose"]]
    assert Settings().monitor.metrics_port == MONITOR_METRICS_PORT

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
    known = METRICS | PENDING_METRICS
    rules = [r for r in _alert_rules() if r["alert"] not in THIRD_PARTY_ALERTS] + _recording_rules()
    errors = [f"{r.get('alert') or r['record']}: {e}" for r in rules for e in _promql_metric_errors(r["expr"], known)]
    assert not errors, errors
    exprs = {r["alert"]: r["expr"] for r in _alert_rules()}
    for name, metric in THIRD_PARTY_ALERTS.items():
        assert metric.split("{")[0] in exprs[name], name


def test_pending_metrics_are_not_yet_exported():
    exported = set(PENDING_METRICS) & set(METRICS)
    assert not exported, f"{exported} are exported now: remove them from PENDING_METRICS in {Path(__file__).name}"


def test_prometheus_alerts_cover_lag_dlq_and_worker_down():
    exprs = " ".join(r["expr"] for r in _alert_rules())
    needles = ("camcount_consumer_lag", "camcount_dead_letters_total", 'up{job="camcount-infer"}',
               'up{job="camcount-count"}')
    for needle in needles:
        assert needle in exprs, f"no alert on {needle}"
    jobs = {job["job_name"] for job in _prometheus_config()["scrape_configs"]}
    for job in re.findall(r'up\{job="([^"]+)"\}', exprs):
        assert job in jobs, f"alert on unknown job {job}"
