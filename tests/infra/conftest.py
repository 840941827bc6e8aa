"""The parsed docker-compose.yml, shared by the compose, Dockerfile, Prometheus and Grafana tests."""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.deploy_helpers import COMPOSE_FILE, _is_camcount, _load_yaml


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _load_yaml(COMPOSE_FILE)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def camcount_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found = {name: svc for name, svc in services.items() if _is_camcount(svc)}
    assert found, "no service builds or runs the camcount image"
    return found
