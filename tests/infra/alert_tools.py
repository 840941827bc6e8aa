"""promtool and amtool for the alerting tests: `make install` (target alert-tools) extracts them from Debian's
prometheus and prometheus-alertmanager packages into $CAMCOUNT_HOME/bin (.camcount/bin by default). A missing tool
fails the test that needs it: the rule and config checks are part of the suite, not optional."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.infra.deploy_helpers import ROOT


def alert_tool(name: str) -> Path:
    home = Path(os.environ.get("CAMCOUNT_HOME") or ".camcount")
    path = (home if home.is_absolute() else ROOT / home) / "bin" / name
    if not os.access(path, os.X_OK):
        pytest.fail(f"{name} is not installed at {path}: run `make install` (its alert-tools target takes {name} "
                    "out of the Debian package; `make test` does this itself)", pytrace=False)
    return path


def run_tool(name: str, *args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(alert_tool(name)), *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=120)
