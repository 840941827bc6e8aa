"""ModelWatcher: hot swap when an alias moves, keeping the served model when the new one cannot load."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from models.detector import Detector
from models.registry import ModelRegistry, RegisteredModel
from models.runtime import CPU
from models.watcher import ModelWatcher
from tests.onnx_models import write_fixed_box_model

INPUT = 32
RETRY_AFTER_S = 60.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingLoader:
    """``load`` for the watcher: a real Detector on CPU, counting the versions it was asked for."""

    def __init__(self) -> None:
        self.versions: list[str] = []

    def __call__(self, model: RegisteredModel) -> Detector:
        self.versions.append(model.manifest.version)
        return Detector.from_model(model, providers=[CPU], max_batch=1)


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    registry = ModelRegistry(tmp_path / "registry")
    onnx_path = write_fixed_box_model(tmp_path / "fixed.onnx")
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        registry.register(onnx_path, name="fixed", version=version, format="yolov5", input_width=INPUT,
                          input_height=INPUT, class_names=["person"])
    registry.promote("fixed", "1.0.0")
    return registry


@pytest.fixture
def loader() -> CountingLoader:
    return CountingLoader()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def watcher(registry: ModelRegistry, loader: CountingLoader, clock: FakeClock) -> ModelWatcher:
    return ModelWatcher(registry, "fixed@production", loader, serving="1.0.0", retry_after_s=RETRY_AFTER_S,
                        clock=clock)


def corrupt_weights(registry: ModelRegistry, version: str) -> None:
    """Change the stored file after registration: its sha256 no longer matches the manifest."""
    path = registry.resolve(f"fixed@{version}").path
    path.write_bytes(path.read_bytes() + b"tampered")


def corrupt_onnx_keeping_checksum(registry: ModelRegistry, version: str) -> None:
    """Replace the stored file with garbage and rewrite the manifest's sha256 to match it."""
    from models.registry import sha256_file

    path = registry.resolve(f"fixed@{version}").path
    path.write_bytes(b"this is not an onnx model")
    manifest_path = path.parent / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["sha256"] = sha256_file(path)
    manifest_path.write_text(json.dumps(manifest))


def test_without_a_served_version_the_first_poll_loads_the_alias_target(registry: ModelRegistry) -> None:
    watcher = ModelWatcher(registry, "fixed@production", CountingLoader())
    result = watcher.poll()
    assert result is not None
    assert (result.version, result.previous_version, result.detector.version) == ("1.0.0", None, "1.0.0")


def test_an_unchanged_alias_loads_nothing(watcher: ModelWatcher, loader: CountingLoader) -> None:
    assert watcher.poll() is None
    assert loader.versions == []


def test_a_moved_alias_yields_a_warmed_detector_of_the_new_version(
    watcher: ModelWatcher, registry: ModelRegistry
) -> None:
    registry.promote("fixed", "1.1.0")
    result = watcher.poll()
    assert result is not None
    assert (result.version, result.previous_version) == ("1.1.0", "1.0.0")
    assert result.detector.version == "1.1.0" and result.detector.status()["state"] == "ready"
    assert watcher.serving == "1.1.0" and watcher.status()["swaps"] == 1


def test_a_swap_happens_once_per_alias_move(watcher: ModelWatcher, registry: ModelRegistry) -> None:
    registry.promote("fixed", "1.1.0")
    watcher.poll()
    assert watcher.poll() is None


def test_rollback_swaps_back_to_the_previous_version(watcher: ModelWatcher, registry: ModelRegistry) -> None:
    registry.promote("fixed", "1.1.0")
    watcher.poll()
    registry.rollback("fixed")
    result = watcher.poll()
    assert result is not None and (result.version, result.previous_version) == ("1.0.0", "1.1.0")


def test_a_checksum_mismatch_keeps_the_served_version_and_reports_model_002(
    watcher: ModelWatcher, registry: ModelRegistry
) -> None:
    corrupt_weights(registry, "1.1.0")
    registry.promote("fixed", "1.1.0")
    assert watcher.poll() is None
    status = watcher.status()
    assert status["serving"] == "1.0.0" and status["target"] == "1.1.0"
    assert status["error"]["code"] == "MODEL_002" and status["error"]["version"] == "1.1.0"


def test_a_corrupt_onnx_file_keeps_the_served_version_and_reports_model_004(
    watcher: ModelWatcher, registry: ModelRegistry
) -> None:
    corrupt_onnx_keeping_checksum(registry, "1.1.0")
    registry.promote("fixed", "1.1.0")
    assert watcher.poll() is None
    assert watcher.serving == "1.0.0" and watcher.status()["error"]["code"] == "MODEL_002"


def test_any_load_exception_counts_as_a_load_error(registry: ModelRegistry) -> None:
    def explode(model: RegisteredModel) -> Detector:
        raise RuntimeError("out of GPU memory")

    watcher = ModelWatcher(registry, "fixed@production", explode, serving="0.9.0")
    assert watcher.poll() is None
    assert watcher.status()["error"]["code"] == "MODEL_002"
    assert "out of GPU memory" in watcher.status()["error"]["message"]


def test_a_broken_version_is_not_retried_on_every_poll(
    watcher: ModelWatcher, registry: ModelRegistry, loader: CountingLoader, clock: FakeClock
) -> None:
    corrupt_weights(registry, "1.1.0")
    registry.promote("fixed", "1.1.0")
    for _ in range(5):
        watcher.poll()
        clock.now += 1
    assert loader.versions == ["1.1.0"]


def test_a_broken_version_is_retried_after_the_backoff(
    watcher: ModelWatcher, registry: ModelRegistry, loader: CountingLoader, clock: FakeClock
) -> None:
    corrupt_weights(registry, "1.1.0")
    registry.promote("fixed", "1.1.0")
    watcher.poll()
    clock.now += RETRY_AFTER_S
    watcher.poll()
    assert loader.versions == ["1.1.0", "1.1.0"]
    assert watcher.status()["error"]["attempts"] == 2


def test_the_backoff_doubles_with_each_failed_attempt(
    watcher: ModelWatcher, registry: ModelRegistry, loader: CountingLoader, clock: FakeClock
) -> None:
    corrupt_weights(registry, "1.1.0")
    registry.promote("fixed", "1.1.0")
    watcher.poll()
    clock.now += RETRY_AFTER_S
    watcher.poll()
    clock.now += RETRY_AFTER_S
    watcher.poll()
    assert loader.versions == ["1.1.0", "1.1.0"]
    assert watcher.status()["error"]["retry_in_s"] == pytest.approx(RETRY_AFTER_S)


def test_a_broken_version_is_retried_when_the_alias_moves_away_and_back(
    watcher: ModelWatcher, registry: ModelRegistry, loader: CountingLoader
) -> None:
    corrupt_weights(registry, "1.1.0")
    registry.promote("fixed", "1.1.0")
    watcher.poll()
    registry.promote("fixed", "1.2.0")
    watcher.poll()
    registry.promote("fixed", "1.1.0")
    watcher.poll()
    assert loader.versions == ["1.1.0", "1.2.0", "1.1.0"]


def test_moving_the_alias_back_to_the_served_version_clears_the_error(
    watcher: ModelWatcher, registry: ModelRegistry
) -> None:
    corrupt_weights(registry, "1.1.0")
    registry.promote("fixed", "1.1.0")
    watcher.poll()
    registry.rollback("fixed")
    assert watcher.poll() is None
    assert watcher.status()["error"] is None and watcher.status()["target"] == "1.0.0"


def test_an_alias_that_does_not_resolve_keeps_the_served_version_and_reports_model_001(
    registry: ModelRegistry, loader: CountingLoader
) -> None:
    watcher = ModelWatcher(registry, "fixed@canary", loader, serving="1.0.0")
    assert watcher.poll() is None
    assert watcher.serving == "1.0.0" and watcher.status()["error"]["code"] == "MODEL_001"
    assert loader.versions == []


class GatedLoader(CountingLoader):
    """CountingLoader whose loads wait until ``release`` is set: a slow load (TensorRT engine build) on demand."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.release = threading.Event()
        self.fail = fail

    def __call__(self, model: RegisteredModel) -> Detector:
        self.release.wait(10)
        if self.fail:
            raise RuntimeError("engine build failed")
        return super().__call__(model)


def poll_until_settled(watcher: ModelWatcher, timeout_s: float = 10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = watcher.poll()
        if result is not None or watcher.status()["loading"] is None:
            return result
        time.sleep(0.01)
    raise AssertionError("background load did not finish")


def test_in_background_mode_polls_return_at_once_while_the_new_version_loads(registry: ModelRegistry) -> None:
    loader = GatedLoader()
    watcher = ModelWatcher(registry, "fixed@production", loader, serving="1.0.0", background=True)
    registry.promote("fixed", "1.1.0")

    polls = [watcher.poll() for _ in range(3)]

    assert polls == [None, None, None]
    assert watcher.serving == "1.0.0" and watcher.status()["loading"] == "1.1.0"
    loader.release.set()


def test_in_background_mode_the_swap_is_handed_over_by_the_first_poll_after_the_load(
    registry: ModelRegistry,
) -> None:
    loader = GatedLoader()
    watcher = ModelWatcher(registry, "fixed@production", loader, serving="1.0.0", background=True)
    registry.promote("fixed", "1.1.0")
    watcher.poll()

    loader.release.set()
    result = poll_until_settled(watcher)

    assert result is not None and (result.version, result.previous_version) == ("1.1.0", "1.0.0")
    assert loader.versions == ["1.1.0"] and watcher.serving == "1.1.0"


def test_in_background_mode_a_failed_load_keeps_the_served_version_and_reports_model_004(
    registry: ModelRegistry,
) -> None:
    loader = GatedLoader(fail=True)
    watcher = ModelWatcher(registry, "fixed@production", loader, serving="1.0.0", background=True)
    registry.promote("fixed", "1.1.0")
    watcher.poll()

    loader.release.set()

    assert poll_until_settled(watcher) is None
    status = watcher.status()
    assert status["serving"] == "1.0.0" and status["error"]["code"] == "MODEL_002"
    assert "engine build failed" in status["error"]["message"]


def test_a_manifest_this_release_cannot_read_is_refused_as_model_002_and_the_served_version_stays(
    watcher: ModelWatcher, registry: ModelRegistry
) -> None:
    registry.promote("fixed", "1.1.0")
    manifest_path = registry.resolve("fixed@1.1.0").path.parent / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["a_field_from_a_newer_release"] = 1
    manifest_path.write_text(json.dumps(manifest))
    assert watcher.poll() is None
    status = watcher.status()
    assert watcher.serving == "1.0.0" and status["error"]["code"] == "MODEL_002"
    assert "cannot be read by this release" in status["error"]["message"]
