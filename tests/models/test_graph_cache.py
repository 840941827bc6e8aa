"""The on-disk cache of optimised CPU graphs: reused for the same weights, rebuilt when unusable, never shared."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from models.detector import Detector
from models.graph_cache import OptimizedGraphCache
from models.registry import ModelRegistry, sha256_file
from models.runtime import CPU, create_session
from tests.onnx_models import write_mean_model

INPUT_HW = (32, 32)
IMAGES = np.random.default_rng(7).random((2, 3, *INPUT_HW), dtype=np.float32)


def toy_model(path: Path, offset: float) -> tuple[Path, str]:
    """Model whose output is mean(image) * 2 + offset, and its sha256."""
    base = np.full((1, 2, 6), offset, np.float32)
    write_mean_model(path, base, np.full((1, 1, 6), 2.0, np.float32), input_hw=INPUT_HW)
    return path, sha256_file(path)


def expected_output(offset: float) -> np.ndarray:
    return np.broadcast_to(IMAGES.mean(axis=(1, 2, 3))[:, None, None] * 2 + offset, (2, 2, 6))


def run(path: Path, sha256: str, cache_dir: Path) -> tuple[str, np.ndarray]:
    info = create_session(path, [CPU], cache_dir=cache_dir, weights_sha256=sha256)
    return info.graph_cache, info.session.run(None, {info.input_name: IMAGES})[0]


def test_first_load_stores_the_optimised_graph_and_the_second_reuses_it(tmp_path: Path) -> None:
    path, sha256 = toy_model(tmp_path / "toy.onnx", 0.5)

    first, first_output = run(path, sha256, tmp_path / "cache")
    second, second_output = run(path, sha256, tmp_path / "cache")

    assert (first, second) == ("stored", "hit")
    assert OptimizedGraphCache(tmp_path / "cache" / "cpu-graphs").path_for(sha256).is_file()
    np.testing.assert_array_equal(second_output, first_output)


def test_storing_a_graph_leaves_one_onnx_file_and_no_temporary_files(tmp_path: Path) -> None:
    path, sha256 = toy_model(tmp_path / "toy.onnx", 0.5)

    run(path, sha256, tmp_path / "cache")

    files = list((tmp_path / "cache" / "cpu-graphs").iterdir())
    assert [f.name for f in files] == [OptimizedGraphCache(files[0].parent).path_for(sha256).name]
    assert len(onnx.load(files[0]).graph.node) > 0


def test_models_with_other_weights_never_share_a_cached_graph(tmp_path: Path) -> None:
    one, one_sha = toy_model(tmp_path / "one.onnx", 0.5)
    other, other_sha = toy_model(tmp_path / "other.onnx", 3.0)
    run(one, one_sha, tmp_path / "cache")

    use, output = run(other, other_sha, tmp_path / "cache")

    assert use == "stored"
    np.testing.assert_allclose(output, expected_output(3.0), rtol=1e-5)


def test_a_corrupt_cached_graph_is_replaced_by_a_fresh_one(tmp_path: Path) -> None:
    path, sha256 = toy_model(tmp_path / "toy.onnx", 0.5)
    cached = OptimizedGraphCache(tmp_path / "cache" / "cpu-graphs").path_for(sha256)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"half a graph")

    use, output = run(path, sha256, tmp_path / "cache")

    assert use == "stored"
    assert run(path, sha256, tmp_path / "cache")[0] == "hit"
    np.testing.assert_allclose(output, expected_output(0.5), rtol=1e-5)


def test_an_unwritable_cache_directory_still_gives_a_working_session(tmp_path: Path) -> None:
    path, sha256 = toy_model(tmp_path / "toy.onnx", 0.5)
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache directory should be")

    use, output = run(path, sha256, blocker)

    assert use == "uncached"
    assert output.shape == (2, 2, 6)


def test_no_cache_is_used_without_a_cache_directory(tmp_path: Path) -> None:
    path, sha256 = toy_model(tmp_path / "toy.onnx", 0.5)

    info = create_session(path, [CPU], weights_sha256=sha256)

    assert info.graph_cache == "off"


def test_cache_key_names_the_weights_and_the_onnx_runtime_version(tmp_path: Path) -> None:
    import onnxruntime

    name = OptimizedGraphCache(tmp_path).path_for("ab" * 32).name

    assert name.startswith("ab" * 16) and f"ort{onnxruntime.__version__}" in name


@pytest.mark.slow
def test_real_model_detects_the_same_boxes_from_its_cached_graph(model_registry: str, tmp_path: Path) -> None:
    from producers.sources import FrameSource
    from tests.pipeline import footage_path

    frames = [frame.image for _, frame in zip(range(4), FrameSource(str(footage_path())).frames())]
    model = ModelRegistry(Path(model_registry)).resolve("yolov4-tiny@production")
    stored = Detector.from_model(model, providers=[CPU], max_batch=4, cache_dir=tmp_path)
    cached = Detector.from_model(model, providers=[CPU], max_batch=4, cache_dir=tmp_path)

    assert (stored.status()["graph_cache"], cached.status()["graph_cache"]) == ("stored", "hit")
    for expected, actual in zip(stored.detect(frames), cached.detect(frames), strict=True):
        assert len(expected.xyxy) > 0
        np.testing.assert_allclose(actual.xyxy, expected.xyxy, atol=1e-3)
        np.testing.assert_array_equal(actual.class_id, expected.class_id)


def test_a_graph_that_cannot_be_saved_still_gives_a_working_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    path, sha256 = toy_model(tmp_path / "toy.onnx", 0.5)

    def full_disk(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    use, output = run(path, sha256, tmp_path / "cache")

    assert use == "uncached"
    np.testing.assert_allclose(output, expected_output(0.5), rtol=1e-5)


def test_a_model_onnx_runtime_cannot_load_is_still_a_load_error_with_the_cache_on(tmp_path: Path) -> None:
    from models.errors import ModelLoadError

    path = tmp_path / "broken.onnx"
    path.write_bytes(b"not an onnx model")

    with pytest.raises(ModelLoadError, match="valid ONNX"):
        create_session(path, [CPU], cache_dir=tmp_path / "cache", weights_sha256=sha256_file(path))


def test_a_cache_disk_that_cannot_be_written_is_logged_once_with_res_004(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, sha256 = toy_model(tmp_path / "toy.onnx", 0.5)
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache directory should be")

    with caplog.at_level("WARNING", logger="models.graph_cache"):
        run(path, sha256, blocker)

    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["RES_004 cache-not-writable"], caplog.text
