"""FallbackChain: the production reference's frames are always served, by a fallback while its version cannot."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from foundation.resilience import ResilienceSettings, circuit_breaker
from models.detector import Detector
from models.errors import ChecksumMismatch, InferenceFailed, LoadTimeout
from models.fallback import FallbackChain, expand_fallbacks
from models.registry import ModelRegistry, RegisteredModel
from models.runtime import CPU
from models.watcher import ModelWatcher
from tests.models.test_watcher import corrupt_weights
from tests.onnx_models import write_fixed_box_model

INPUT = 32
FRAMES = [np.zeros((48, 64, 3), np.uint8)]
BREAKER = ResilienceSettings(breaker_failures=2, breaker_reset_s=0.3)


class Loader:
    """Real CPU detectors; versions in ``slow`` take ``slow_s`` to load; ``loaded`` keeps each by version."""

    def __init__(self, slow: tuple[str, ...] = (), slow_s: float = 0.0) -> None:
        self.slow, self.slow_s = slow, slow_s
        self.loaded: dict[str, Detector] = {}

    def __call__(self, model: RegisteredModel) -> Detector:
        if model.manifest.version in self.slow:
            time.sleep(self.slow_s)
        detector = Detector.from_model(model, providers=[CPU], max_batch=1)
        self.loaded[model.manifest.version] = detector
        return detector


def break_inference(detector: Detector, broken: threading.Event) -> None:
    """While ``broken`` is set, the detector's model runs fail as ONNX Runtime failures do (InferenceFailed)."""
    run = detector._run

    def failing_run(batch_size: int, output_names: tuple[str, ...]):
        if broken.is_set():
            raise InferenceFailed(f"{detector.name}@{detector.version}: injected kernel failure")
        return run(batch_size, output_names)

    detector._run = failing_run


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    registry = ModelRegistry(tmp_path / "registry")
    onnx_path = write_fixed_box_model(tmp_path / "fixed.onnx")
    for version in ("1.0.0", "1.1.0", "2.0.0"):
        registry.register(onnx_path, name="fixed", version=version, format="yolov5", input_width=INPUT,
                          input_height=INPUT, class_names=["person"])
    registry.promote("fixed", "1.0.0")
    registry.promote("fixed", "1.1.0")  # production 1.1.0, previous 1.0.0
    return registry


def chain_for(registry: ModelRegistry, loader: Loader, fallbacks=("@previous",), load_timeout_s: float = 30.0,
              watch: bool = True) -> FallbackChain:
    def make_watcher(serving: str | None) -> ModelWatcher:
        return ModelWatcher(registry, "fixed@production", loader, serving=serving, retry_after_s=0.05)

    return FallbackChain(registry, "fixed@production", list(fallbacks), loader, load_timeout_s,
                         circuit_breaker("model:fixed@production", BREAKER), make_watcher if watch else None)


def test_fallback_entries_starting_with_at_name_the_reference_s_own_model():
    assert [str(r) for r in expand_fallbacks("fixed@production", ["@previous", "tiny@1.0.0"])] == [
        "fixed@previous", "tiny@1.0.0"]


def test_the_production_version_serves_and_nothing_is_a_fallback_while_it_works(registry):
    chain = chain_for(registry, Loader())
    assert chain.start().version == "1.1.0"
    served = chain.detect(FRAMES)
    assert (served.detector.version, served.fallback, chain.fallback_active) == ("1.1.0", False, False)


def test_a_production_version_that_will_not_load_at_start_up_is_served_by_the_next_in_the_chain(registry):
    corrupt_weights(registry, "1.1.0")
    chain = chain_for(registry, Loader())
    assert chain.start().version == "1.0.0"
    served = chain.detect(FRAMES)
    assert (served.detector.version, served.fallback, chain.fallback_active) == ("1.0.0", True, True)


def test_a_version_slower_to_load_than_the_load_timeout_counts_as_failed_and_the_chain_serves(registry):
    chain = chain_for(registry, Loader(slow=("1.1.0",), slow_s=2.0), load_timeout_s=0.5)
    started = time.monotonic()
    assert chain.start().version == "1.0.0"
    assert time.monotonic() - started < 1.8
    assert isinstance(chain._primary_error, LoadTimeout) and chain._primary_error.code == "MODEL_002"


def test_a_chain_where_nothing_loads_refuses_to_start_with_the_production_version_s_error(registry):
    corrupt_weights(registry, "1.1.0")
    corrupt_weights(registry, "1.0.0")
    with pytest.raises(ChecksumMismatch) as raised:
        chain_for(registry, Loader()).start()
    assert "1.1.0" in str(raised.value) and raised.value.code == "MODEL_002"


def test_a_promoted_version_that_cannot_load_leaves_the_fallback_serving_until_a_rollback_clears_it(registry):
    chain = chain_for(registry, Loader())
    chain.start()
    corrupt_weights(registry, "2.0.0")
    registry.promote("fixed", "2.0.0")  # production 2.0.0 (broken), previous 1.1.0
    chain.refresh()
    served = chain.detect(FRAMES)
    assert (served.detector.version, served.fallback, chain.fallback_active) == ("1.1.0", True, True)

    registry.rollback("fixed")
    chain.refresh()
    served = chain.detect(FRAMES)
    assert (served.detector.version, served.fallback, chain.fallback_active) == ("1.1.0", False, False)


def test_the_start_up_fallback_hands_back_to_production_once_its_version_loads(registry):
    corrupt_weights(registry, "1.1.0")
    loader = Loader()
    chain = chain_for(registry, loader)
    chain.start()
    registry.promote("fixed", "2.0.0")  # the fix: a new production version that loads
    chain.refresh()
    served = chain.detect(FRAMES)
    assert (served.detector.version, served.fallback, chain.fallback_active) == ("2.0.0", False, False)


def test_a_failing_batch_is_served_by_the_fallback_at_once_so_no_frame_is_lost(registry):
    loader = Loader()
    chain = chain_for(registry, loader)
    broken = threading.Event()
    break_inference(chain.start(), broken)
    broken.set()
    served = chain.detect(FRAMES)
    assert (served.detector.version, served.fallback) == ("1.0.0", True)
    assert len(served.detections) == 1


def test_consecutive_inference_failures_open_the_breaker_and_a_half_open_probe_brings_production_back(registry):
    chain = chain_for(registry, Loader())
    broken = threading.Event()
    break_inference(chain.start(), broken)
    broken.set()
    for _ in range(BREAKER.breaker_failures):
        chain.detect(FRAMES)
    assert chain.fallback_active and chain.status()["breaker"] == "open"
    broken.clear()  # production works again, but the breaker keeps the fallback until its reset time
    assert chain.detect(FRAMES).fallback
    time.sleep(BREAKER.breaker_reset_s + 0.05)
    served = chain.detect(FRAMES)  # the half-open probe
    assert (served.detector.version, served.fallback, chain.fallback_active) == ("1.1.0", False, False)


def test_a_fallback_that_cannot_load_is_skipped_for_the_next_one(registry):
    corrupt_weights(registry, "1.1.0")
    corrupt_weights(registry, "1.0.0")
    chain = chain_for(registry, Loader(), fallbacks=("@previous", "fixed@2.0.0"))
    assert chain.start().version == "2.0.0"
    assert chain.status()["serving"] == "fixed@2.0.0" and chain.status()["fallback_active"]


def test_when_every_model_fails_a_batch_the_chain_raises_inference_failed(registry):
    loader = Loader()
    chain = chain_for(registry, loader)
    broken = threading.Event()
    break_inference(chain.start(), broken)
    broken.set()
    chain.detect(FRAMES)  # loads the fallback 1.0.0
    break_inference(loader.loaded["1.0.0"], broken)
    with pytest.raises(InferenceFailed):
        chain.detect(FRAMES)


def test_a_background_load_slower_than_the_load_timeout_fails_as_model_002_load_timeout(registry):
    watcher = ModelWatcher(registry, "fixed@production", Loader(slow=("2.0.0",), slow_s=1.0), serving="1.1.0",
                           background=True, load_timeout_s=0.2)
    registry.promote("fixed", "2.0.0")
    assert watcher.poll() is None and watcher.loading
    time.sleep(0.3)
    assert watcher.poll() is None
    error = watcher.status()["error"]
    assert (error["version"], error["code"]) == ("2.0.0", "MODEL_002") and "did not load within" in error["message"]


def test_failed_loads_are_counted_by_code_and_detail_for_the_load_failure_metric(registry):
    corrupt_weights(registry, "1.1.0")
    chain = chain_for(registry, Loader())
    chain.start()  # production 1.1.0 fails: the chain serves 1.0.0
    corrupt_weights(registry, "2.0.0")
    registry.promote("fixed", "2.0.0")
    chain.refresh()  # the watcher's load of 2.0.0 fails too
    assert chain.load_failures() == {("MODEL_002", "checksum-mismatch"): 2}
    assert chain.status()["target"] == "2.0.0"
