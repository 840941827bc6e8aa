"""The uint8 prelude: the fused graph computes on canvases exactly what the model computes on their normalisation."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from models.errors import ModelLoadError, OutputFormatMismatch
from models.fused_input import FUSED_INPUT, fuse_uint8_input
from models.manifest import ModelManifest
from models.preprocess import BatchPreprocessor, model_input
from models.registry import ModelRegistry
from tests.onnx_models import images_input, make_model

HEIGHT, WIDTH = 24, 32


def manifest(**overrides: Any) -> ModelManifest:
    fields: dict[str, Any] = {
        "name": "toy", "version": "1.0.0", "format": "yolov5", "input_width": WIDTH, "input_height": HEIGHT,
        "class_names": ["person"], "sha256": "0" * 64, "created_at": datetime(2025, 1, 1, tzinfo=UTC),
    }
    return ModelManifest(**(fields | overrides))


def write_identity_model(path: Path, batch: int | str = "N", input_hw: tuple[Any, Any] = (HEIGHT, WIDTH)) -> Path:
    """A model whose output is its float image input, so the prelude's result can be read back whole."""
    output = helper.make_tensor_value_info("output", TensorProto.FLOAT, None)
    model = make_model([helper.make_node("Identity", ["images"], ["output"])], "identity",
                       [images_input(input_hw, batch)], [output], [])
    onnx.save(model, path)
    return path


def canvases(count: int) -> np.ndarray:
    return np.random.default_rng(count).integers(0, 256, size=(count, HEIGHT, WIDTH, 3), dtype=np.uint8)


def run(graph: bytes, batch: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [FUSED_INPUT]
    return session.run(None, {FUSED_INPUT: batch})[0]


@pytest.mark.parametrize("overrides", [
    {},
    {"color_order": "BGR"},
    {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)},
    {"scale": 1.0},
], ids=["rgb-unit-range", "bgr", "mean-std", "raw-pixel-range"])
def test_the_fused_graph_computes_what_the_host_normalisation_computes(tmp_path: Path,
                                                                       overrides: dict[str, Any]) -> None:
    model_manifest = manifest(**overrides)
    graph = fuse_uint8_input(write_identity_model(tmp_path / "m.onnx"), model_manifest)
    batch = canvases(3)

    np.testing.assert_array_equal(run(graph, batch), model_input(batch, model_manifest))


def test_a_static_batch_dimension_is_kept(tmp_path: Path) -> None:
    graph = fuse_uint8_input(write_identity_model(tmp_path / "m.onnx", batch=4), manifest())

    dims = onnx.load_model_from_string(graph).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [4, HEIGHT, WIDTH, 3]
    assert run(graph, canvases(4)).shape == (4, 3, HEIGHT, WIDTH)


def test_an_open_image_size_is_fed_at_the_manifest_size(tmp_path: Path) -> None:
    graph = fuse_uint8_input(write_identity_model(tmp_path / "m.onnx", input_hw=("H", "W")), manifest())

    dims = onnx.load_model_from_string(graph).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims[1:]] == [HEIGHT, WIDTH, 3]


def test_an_input_size_other_than_the_manifests_is_refused_naming_the_fields_to_fix(tmp_path: Path) -> None:
    path = write_identity_model(tmp_path / "m.onnx", input_hw=(HEIGHT * 2, WIDTH))

    with pytest.raises(OutputFormatMismatch, match="input_width/input_height"):
        fuse_uint8_input(path, manifest())


def test_a_model_with_a_non_float_input_is_refused(tmp_path: Path) -> None:
    path = write_identity_model(tmp_path / "m.onnx")
    model = onnx.load(str(path))
    model.graph.input[0].type.tensor_type.elem_type = TensorProto.FLOAT16
    onnx.save(model, path)

    with pytest.raises(OutputFormatMismatch, match="FLOAT16"):
        fuse_uint8_input(path, manifest())


def test_a_file_that_is_not_onnx_is_a_load_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"not an onnx model")

    with pytest.raises(ModelLoadError, match="valid ONNX"):
        fuse_uint8_input(path, manifest())


@pytest.mark.slow
def test_the_real_model_gives_identical_outputs_fused_and_fed_on_the_host(model_registry: str) -> None:
    from producers.sources import sample_frames
    from tests.pipeline import footage_path

    model = ModelRegistry(Path(model_registry)).resolve("yolov4-tiny@production")
    preprocessor = BatchPreprocessor(model.manifest, max_batch=2)
    for index, frame in enumerate(sample_frames(footage_path(), 2)):
        preprocessor.fill(index, frame)
    batch = preprocessor.batch(2)
    plain = ort.InferenceSession(str(model.path), providers=["CPUExecutionProvider"])
    fused = ort.InferenceSession(fuse_uint8_input(model.path, model.manifest), providers=["CPUExecutionProvider"])

    expected = plain.run(None, {plain.get_inputs()[0].name: model_input(batch, model.manifest)})
    actual = fused.run(None, {FUSED_INPUT: batch})

    for want, got in zip(expected, actual, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
