"""infra/grafana: the dashboard's queries, panels and datasources, against the metrics, the DDL and compose."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlparse

import pytest

from foundation.settings import Settings
from tests.infra.deploy_helpers import METRICS, ROOT, _env, _load_yaml, _promql_metric_errors

GRAFANA_DIR = ROOT / "infra" / "grafana"
DASHBOARD_FILE = GRAFANA_DIR / "dashboards" / "camcount.json"
DDL_DIR = ROOT / "infra" / "clickhouse"


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
    from api.metrics import ApiMetrics
    from camcount.monitor import MonitorMetrics
    from foundation.process_metrics import register_resource_metrics
    from foundation.settings import Settings
    from sinks.kafka_sink import ClickHouseSink
    from stream_apps.counting_app import CountingMetrics
    from stream_apps.inference.metrics import FallbackCollector, InferenceMetrics, LoadedModelsCollector

    inference = InferenceMetrics()
    inference.registry.register(LoadedModelsCollector(lambda: []))
    inference.registry.register(FallbackCollector(None))
    register_resource_metrics(inference.registry)
    exported = {}
    for registry in (inference.registry, CountingMetrics().registry, ClickHouseSink(Settings()).metrics_registry,
                     ApiMetrics().registry, MonitorMetrics().registry):
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
