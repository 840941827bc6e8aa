"""Experiments and samples the experiment tests share."""

from datetime import UTC, datetime

import numpy as np

from experiments.config import Experiment
from experiments.report import VariantSamples

START = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
"""When the stored samples of the ``fast-model`` experiment begin."""


def speed_experiment(**overrides) -> Experiment:
    """Control ``a`` (yolo) against candidate ``b`` (yolo-fast), 500 samples per variant needed."""
    data = {
        "name": "speed",
        "variants": [{"name": "a", "model": "yolo@1.0.0"}, {"name": "b", "model": "yolo-fast@1.0.0"}],
        "min_samples_per_variant": 500,
    }
    return Experiment.model_validate({**data, **overrides})


def fast_model_experiment(name: str = "fast-model") -> Experiment:
    """Two versions of one model: ``a`` = yolo@1.0.0, ``b`` = yolo@2.0.0."""
    return Experiment.model_validate({
        "name": name,
        "variants": [{"name": "a", "model": "yolo@1.0.0"}, {"name": "b", "model": "yolo@2.0.0"}],
    })


def samples(rng, n, *, latency_ms=20.0, slower_ms=0.0, detections=3.0, error_rate=0.01, cameras=50):
    """Lognormal inference latency around ``latency_ms`` (+ ``slower_ms``), Poisson detections and crossings."""
    infer = rng.lognormal(np.log(latency_ms), 0.25, n) + slower_ms
    return VariantSamples(
        infer_ms=infer, e2e_ms=infer + rng.gamma(4.0, 2.0, n), detections=rng.poisson(detections, n),
        mean_confidence=rng.uniform(0.4, 0.9, n), error=rng.random(n) < error_rate,
        crossings_per_camera_hour=rng.poisson(40, 200), cameras=cameras,
    )
