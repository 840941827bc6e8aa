"""Hypothesis keeps caches (constants it collects from the source) in a storage folder, ``.hypothesis`` in the
working directory by default, even with no example database: point it at the system's temp folder instead, so
fuzzing writes nothing into the repository. A ``HYPOTHESIS_STORAGE_DIRECTORY`` already set wins."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", str(Path(tempfile.gettempdir()) / "camcount-hypothesis"))
