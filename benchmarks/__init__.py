"""Benchmark data shipped with camcount as package data: hand-checked ground truth (``ground_truth/*.json``)."""

from importlib.resources import files
from pathlib import Path

GROUND_TRUTH_DIR = Path(str(files(__name__) / "ground_truth"))
