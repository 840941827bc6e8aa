"""What an operator sees of an inference worker over HTTP: which models are loaded, on which provider, in what state."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from foundation.ops_http import OpsServer
from models.detector import Detector
from models.registry import ModelRegistry
from models.runtime import CPU
from stream_apps.inference.metrics import LoadedModelsCollector
from stream_apps.inference.routing import RouteTable
from tests.onnx_models import model_fields, write_fixed_box_model


@pytest.fixture
def detector(tmp_path: Path) -> Detector:
    registry = ModelRegistry(tmp_path / "registry")
    registry.register(write_fixed_box_model(tmp_path / "box.onnx"), **model_fields("box", 32, ["person"]))
    return Detector.load(registry, "box@1.0.0", providers=[CPU], max_batch=2)


@pytest.fixture
def ops_server(detector: Detector) -> Iterator[OpsServer]:
    routes = RouteTable(detector)
    server = OpsServer(0, CollectorRegistry(), lambda: True, {"/models": routes.status})
    server.start()
    yield server
    server.stop()


def test_models_endpoint_lists_each_loaded_model_with_its_provider_and_state(ops_server: OpsServer) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{ops_server.port}/models", timeout=5) as response:
        content_type = response.headers["Content-Type"]
        document = json.loads(response.read())

    assert content_type == "application/json"
    assert document["production"]["version"] == "1.0.0"
    [loaded] = document["loaded"]
    assert (loaded["name"], loaded["provider"], loaded["state"]) == ("box", CPU, "ready")
    assert loaded["warmup_ms"] > 0


def test_unknown_paths_are_still_not_found(ops_server: OpsServer) -> None:
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(f"http://127.0.0.1:{ops_server.port}/model", timeout=5)

    assert raised.value.code == 404


def test_model_info_metric_names_version_provider_and_state_of_every_loaded_model(detector: Detector) -> None:
    registry = CollectorRegistry()
    registry.register(LoadedModelsCollector(lambda: [detector]))

    body = generate_latest(registry).decode()

    assert ('camcount_model_info{graph_cache="off",model="box",provider="CPUExecutionProvider",state="ready",'
            'version="1.0.0"} 1.0') in body
    assert 'camcount_model_warmup_seconds{model="box",version="1.0.0"}' in body


def test_two_copies_of_one_model_version_export_one_info_series(detector: Detector) -> None:
    registry = CollectorRegistry()
    registry.register(LoadedModelsCollector(lambda: [detector, detector]))

    body = generate_latest(registry).decode()

    assert body.count("camcount_model_info{") == 1
