"""Loads the detectors an inference worker serves: the production model, plus experiment variants later."""

from __future__ import annotations

import logging
from pathlib import Path

from camcount.settings import Settings
from models.detector import Detector
from models.registry import ModelRegistry
from stream_apps.inference.worker import ModelRoutes

log = logging.getLogger(__name__)


def load_routes(settings: Settings) -> ModelRoutes:
    registry = ModelRegistry(Path(settings.model_registry()))
    production = Detector.load(
        registry,
        settings.model.reference,
        providers=settings.model.providers,
        max_batch=settings.inference.max_batch,
        cache_dir=settings.home / "cache" / "ort",
    )
    log.info("serving %s@%s on %s for frames without a variant", production.name, production.version,
             production.provider)
    return ModelRoutes(production)
