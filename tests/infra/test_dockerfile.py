"""The Dockerfile and .dockerignore: runtime user, baked-in model, package data, env var names."""

from __future__ import annotations

import re
import tomllib

from tests.infra.deploy_helpers import DOCKERFILE, ROOT, _env, _field_path_error

DOCKERIGNORE = ROOT / ".dockerignore"


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


def test_the_clickhouse_ddl_and_ground_truth_ship_as_package_data_and_the_image_checks_the_ddl():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert {"infra", "benchmarks"} <= set(pyproject["packages"]["find"]["include"])
    package_data = pyproject["package-data"]
    assert package_data["infra"] == ["clickhouse/*.sql", "clickhouse/queries/*.sql"]
    assert package_data["benchmarks"] == ["ground_truth/*.json"]
    for package, patterns in (("infra", package_data["infra"]), ("benchmarks", package_data["benchmarks"])):
        for pattern in patterns:
            assert sorted((ROOT / package).glob(pattern)), f"{package}/{pattern} matches nothing to ship"
    # the build stage checks, from /, that the installed package (not /src) finds its DDL
    text = DOCKERFILE.read_text()
    runs = re.findall(r"^RUN (?:.*\\\n)*.*$", text, re.M)
    (check,) = [run for run in runs if "from foundation.clickhouse import CLICKHOUSE_DDL_DIR" in run]
    assert "cd /;" in check and 'glob("*.sql")' in check and 'startswith("/src")' in check, check
    # no copying the DDL next to site-packages or into /app any more
    assert "cp /src/infra/clickhouse" not in text
    assert not re.search(r"^COPY .*infra/clickhouse", text, re.M)


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
