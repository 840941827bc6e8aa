"""Where camcount keeps its files under ``settings.home``: the one place this layout is written down.

    <home>/data/           sample footage (vtest.avi)
    <home>/models/         the default local model registry
    <home>/cache/          runtime caches: registry downloads, ONNX Runtime graphs/engines, darknet downloads
    <home>/stack/          the local dev stack's processes (one folder per service)
    <home>/faust/<app id>  the counting app's Faust data directory
    <home>/logs/           logs of processes the demo starts
    <home>/reports/        rendered A/B reports
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SAMPLE_FOOTAGE = "vtest.avi"


@dataclass(frozen=True)
class HomeLayout:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def sample_footage(self) -> Path:
        """vtest.avi, put there by ``make footage``."""
        return self.data / SAMPLE_FOOTAGE

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def registry_cache(self) -> Path:
        """Where models fetched from an s3:// registry are kept."""
        return self.root / "cache" / "registry"

    @property
    def runtime_cache(self) -> Path:
        """Where ONNX Runtime keeps TensorRT engines and optimised CPU graphs between model loads."""
        return self.root / "cache" / "ort"

    @property
    def darknet_cache(self) -> Path:
        return self.root / "cache" / "darknet"

    @property
    def stack(self) -> Path:
        return self.root.resolve() / "stack"

    def faust_data(self, app_id: str) -> Path:
        return self.root / "faust" / app_id

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def reports(self) -> Path:
        return self.root / "reports"
