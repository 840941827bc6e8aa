"""A wheel built from the repository carries everything its commands read: DDL, schemas, ground truth.

The wheel is installed without dependencies into a fresh venv that borrows the test venv's third-party packages
(through a ``.pth`` line, which does not run the editable install's path hooks), and run from outside the
repository, so only files inside the installed packages can be found.
"""

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import cv2
import pytest

from tests.pipeline import footage_path
from tests.services import free_stack_ports

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory) -> Path:
    """The ``bin`` folder of a venv where camcount is installed from a freshly built wheel."""
    root = tmp_path_factory.mktemp("wheel")
    # Built from a copy of the files git would commit: a build/ folder left in the repository by an earlier
    # build can hold modules since deleted, which setuptools would pack again.
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (REPO / name).is_file():
            (root / "src" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / "src" / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(root / "dist"), str(root / "src")], check=True, timeout=300, capture_output=True)
    (wheel,) = (root / "dist").glob("camcount-*.whl")
    venv.create(root / "venv", with_pip=False)
    site = next((root / "venv" / "lib").glob("python3.*/site-packages"))
    borrowed = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    (site / "borrowed_dependencies.pth").write_text(borrowed + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, timeout=300, capture_output=True)
    return root / "venv" / "bin"


def _camcount(bin_dir: Path, cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CAMCOUNT_") and k not in (
        "KAFKA_BOOTSTRAP_SERVERS", "CLICKHOUSE_URL", "REDIS_URL", "PYTHONPATH")}
    return subprocess.run([str(bin_dir / "python"), "-m", "camcount.cli", *args], cwd=cwd, env={**clean, **env},
                          capture_output=True, text=True, timeout=240)


def test_the_installed_wheel_imports_camcount_from_its_own_site_packages(installed_wheel, tmp_path):
    result = subprocess.run([str(installed_wheel / "python"), "-c",
                             "import camcount, foundation.clickhouse as c, benchmarks as b; "
                             "print(camcount.__file__); print(c.CLICKHOUSE_DDL_DIR); print(b.GROUND_TRUTH_DIR)"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True)

    for line in result.stdout.split():
        assert str(REPO) not in line and "site-packages" in line, line
    assert (Path(result.stdout.split()[1]) / "001_crossing_events.sql").is_file()
    assert (Path(result.stdout.split()[2]) / "vtest_L1.json").is_file()


def test_the_installed_wheel_runs_stack_up_and_analyze(installed_wheel, tmp_path, model_registry):
    env = {"CAMCOUNT_HOME": str(tmp_path / "home"), "CAMCOUNT_MODEL__REGISTRY": model_registry,
           **{f"CAMCOUNT_STACK__{name.upper()}": str(port) for name, port in free_stack_ports().items()}}
    frames = tmp_path / "frames"
    frames.mkdir()
    capture = cv2.VideoCapture(str(footage_path()))
    for index in range(3):
        ok, image = capture.read()
        assert ok
        cv2.imwrite(str(frames / f"{index:03d}.jpg"), image)
    capture.release()
    config = tmp_path / "cameras.yaml"
    config.write_text("cameras:\n  yard:\n    lines:\n      - {name: L1, start: [380, 0], end: [380, 576]}\n")
    try:
        up = _camcount(installed_wheel, tmp_path, env, "stack", "up")
        assert up.returncode == 0, up.stdout + up.stderr
        assert "001_crossing_events.sql" in up.stdout  # the DDL was found inside the installed package

        analyzed = _camcount(installed_wheel, tmp_path, env, "analyze", str(frames), "--config", str(config),
                             "--camera-id", "yard", "--json")
        assert analyzed.returncode == 0, analyzed.stderr
        assert json.loads(analyzed.stdout)["frames"] == 3
    finally:
        _camcount(installed_wheel, tmp_path, env, "stack", "down")
