"""In-process API parts for tests that need no stack and no real model: a one-model registry and a detector
that answers with one box (optionally slowly, or failing)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from api.auth import FailureBudget, KeyLookup, KeyRing
from api.metrics import ApiMetrics
from api.model_pool import ModelPool
from api.services import ApiServices
from foundation.settings import Settings
from models.detections import Detections
from models.detector import DetectParams
from models.errors import ModelNotFound
from models.manifest import ModelManifest
from models.registry import ModelReference, RegisteredModel

ADMIN_KEY = "fake-admin-key"
MANIFEST = ModelManifest(name="fake", version="1.0.0", format="yolov5", input_width=32, input_height=32,
                         class_names=["person"], sha256="0" * 64, created_at=datetime(2024, 1, 1, tzinfo=UTC))


class FakeRegistry:
    """Knows ``fake`` (production = 1.0.0) and nothing else."""

    def resolve(self, ref: str | ModelReference) -> RegisteredModel:
        reference = ModelReference.parse(ref) if isinstance(ref, str) else ref
        if reference.name != "fake" or reference.selector not in ("production", "1.0.0"):
            raise ModelNotFound(f"{reference} is not registered")
        return RegisteredModel(Path("/nonexistent/model.onnx"), MANIFEST)

    def list(self) -> list:
        return []


class FakeDetector:
    """One box per image; ``run_s`` per batch; raises ``error`` when set."""

    provider = "FakeProvider"
    manifest = MANIFEST

    def __init__(self, run_s: float = 0.0, error: Exception | None = None) -> None:
        self.run_s = run_s
        self.error = error

    def detect_each(self, images: Sequence[np.ndarray], params: Sequence[DetectParams]) -> list[Detections]:
        time.sleep(self.run_s)
        if self.error is not None:
            raise self.error
        return [Detections([[1, 2, 3, 4]], [0.9], [0]) for _ in images]


def fake_services(settings: Settings, detector: FakeDetector | None = None, failure_limit: int = 100,
                  lookups: list[KeyLookup] | None = None) -> ApiServices:
    """Services on the fake registry and detector: no Redis, no ClickHouse, nothing preloaded."""
    detector = detector or FakeDetector()
    registry = FakeRegistry()
    api = settings.api
    models = ModelPool(registry, lambda model: detector, api.max_batch, api.max_delay_ms,  # type: ignore[arg-type]
                       api.max_loaded_models, 0.0)
    return ApiServices(settings=settings, registry=registry, models=models,  # type: ignore[arg-type]
                       key_ring=KeyRing(ADMIN_KEY, lookups or [], FailureBudget(failure_limit, 60.0)),
                       metrics=ApiMetrics(), preload=[])
