"""The serving graph: its prelude computes on canvases exactly what the model computes on their normalisation, and
its tail's candidates decode to exactly the detections of the model's raw output."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from models.detections import Detections
from models.errors import ModelLoadError, OutputFormatMismatch
from models.manifest import ModelManifest
from models.postprocess import postprocess
from models.preprocess import BatchPreprocessor, LetterboxTransform, model_input
from models.registry import ModelRegistry
from models.serving_graph import CANDIDATES, SERVING_INPUT, serving_graph
from tests.onnx_models import images_input, make_model, write_tiled_model

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
    """The identity model's output (the prelude's result) for ``batch``."""
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [SERVING_INPUT]
    return session.run(["output"], {SERVING_INPUT: batch})[0]


@pytest.mark.parametrize("overrides", [
    {},
    {"color_order": "BGR"},
    {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)},
    {"scale": 1.0},
], ids=["rgb-unit-range", "bgr", "mean-std", "raw-pixel-range"])
def test_the_prelude_computes_what_the_host_normalisation_computes(tmp_path: Path,
                                                                   overrides: dict[str, Any]) -> None:
    model_manifest = manifest(**overrides)
    graph = serving_graph(write_identity_model(tmp_path / "m.onnx"), model_manifest)
    batch = canvases(3)

    np.testing.assert_array_equal(run(graph, batch), model_input(batch, model_manifest))


def test_a_static_batch_dimension_is_kept(tmp_path: Path) -> None:
    graph = serving_graph(write_identity_model(tmp_path / "m.onnx", batch=4), manifest())

    dims = onnx.load_model_from_string(graph).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [4, HEIGHT, WIDTH, 3]
    assert run(graph, canvases(4)).shape == (4, 3, HEIGHT, WIDTH)


def test_an_open_image_size_is_fed_at_the_manifest_size(tmp_path: Path) -> None:
    graph = serving_graph(write_identity_model(tmp_path / "m.onnx", input_hw=("H", "W")), manifest())

    dims = onnx.load_model_from_string(graph).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims[1:]] == [HEIGHT, WIDTH, 3]


def test_an_input_size_other_than_the_manifests_is_refused_naming_the_fields_to_fix(tmp_path: Path) -> None:
    path = write_identity_model(tmp_path / "m.onnx", input_hw=(HEIGHT * 2, WIDTH))

    with pytest.raises(OutputFormatMismatch, match="input_width/input_height"):
        serving_graph(path, manifest())


def test_a_model_with_a_non_float_input_is_refused(tmp_path: Path) -> None:
    path = write_identity_model(tmp_path / "m.onnx")
    model = onnx.load(str(path))
    model.graph.input[0].type.tensor_type.elem_type = TensorProto.FLOAT16
    onnx.save(model, path)

    with pytest.raises(OutputFormatMismatch, match="FLOAT16"):
        serving_graph(path, manifest())


def test_a_file_that_is_not_onnx_is_a_load_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"not an onnx model")

    with pytest.raises(ModelLoadError, match="valid ONNX"):
        serving_graph(path, manifest())


@pytest.mark.slow
def test_the_real_model_gives_the_same_raw_output_and_detections_through_the_serving_graph(model_registry: str) -> None:
    from producers.sources import sample_frames
    from tests.pipeline import footage_path

    model = ModelRegistry(Path(model_registry)).resolve("yolov4-tiny@production")
    preprocessor = BatchPreprocessor(model.manifest, max_batch=2)
    transforms = [preprocessor.fill(index, frame) for index, frame in enumerate(sample_frames(footage_path(), 2))]
    batch = preprocessor.batch(2)
    plain = ort.InferenceSession(str(model.path), providers=["CPUExecutionProvider"])
    serving = ort.InferenceSession(serving_graph(model.path, model.manifest), providers=["CPUExecutionProvider"])

    (expected,) = plain.run(None, {plain.get_inputs()[0].name: model_input(batch, model.manifest)})
    raw, candidates = serving.run(["output", CANDIDATES], {SERVING_INPUT: batch})

    np.testing.assert_allclose(raw, expected, rtol=1e-5, atol=1e-5)
    from_raw = postprocess([raw], "yolov5", transforms, conf=0.1, iou=0.45)
    from_candidates = postprocess([candidates], "candidates", transforms, conf=0.1, iou=0.45)
    assert sum(len(d.xyxy) for d in from_raw) > 10
    for want, got in zip(from_raw, from_candidates, strict=True):
        assert_same_detections(got, want)


# --- the candidates tail ------------------------------------------------------------------------------------------
ANCHORS, CLASSES = 400, 5


def raw_rows(fmt: str, seed: int = 0) -> np.ndarray:
    """One image's raw output in ``fmt`` layout: boxes in the input, probabilities in [0, 1], a tied pair of class
    probabilities in some rows (argmax must pick the first, as numpy does)."""
    rng = np.random.default_rng(seed)
    rows = np.concatenate([rng.uniform(2, 30, (ANCHORS, 2)), rng.uniform(1, 12, (ANCHORS, 2)),
                           rng.uniform(0, 1, (ANCHORS, 1 + CLASSES))], axis=1).astype(np.float32)
    rows[::7, 6] = rows[::7, 5]
    if fmt == "yolov8":
        return np.ascontiguousarray(rows[:, [0, 1, 2, 3, *range(5, 5 + CLASSES)]].T[None])
    return rows[None]


def assert_same_detections(got: Detections, want: Detections) -> None:
    np.testing.assert_array_equal(got.xyxy, want.xyxy)
    np.testing.assert_array_equal(got.confidence, want.confidence)
    np.testing.assert_array_equal(got.class_id, want.class_id)


@pytest.mark.parametrize(("fmt", "opset"), [("yolov5", 17), ("yolov8", 17), ("yolov5", 18), ("yolov8", 18)])
def test_the_candidates_decode_to_the_detections_of_the_raw_output(tmp_path: Path, fmt: str, opset: int) -> None:
    path = write_tiled_model(tmp_path / "m.onnx", raw_rows(fmt), (HEIGHT, WIDTH))
    model = onnx.load(str(path))
    model.opset_import[0].version = opset
    onnx.save(model, path)
    graph = serving_graph(path, manifest(format=fmt, class_names=[f"c{i}" for i in range(CLASSES)]))
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    transforms = [LetterboxTransform.fit(WIDTH * 2, HEIGHT * 2, WIDTH, HEIGHT)] * 2

    raw, candidates = session.run(["output", CANDIDATES], {SERVING_INPUT: canvases(2)})

    assert candidates.shape == (2, ANCHORS, 7)
    for conf in (0.05, 0.25, 0.6):
        from_raw = postprocess([raw], fmt, transforms, conf, iou=0.45)
        from_candidates = postprocess([candidates], "candidates", transforms, conf, iou=0.45)
        assert sum(len(d.xyxy) for d in from_raw) > 0
        for want, got in zip(from_raw, from_candidates, strict=True):
            assert_same_detections(got, want)


def test_an_end2end_model_is_served_without_a_tail(tmp_path: Path) -> None:
    rows = np.array([[[1, 2, 10, 12, 0.9, 0]]], np.float32)
    path = write_tiled_model(tmp_path / "m.onnx", rows, (HEIGHT, WIDTH))

    graph = onnx.load_model_from_string(serving_graph(path, manifest(format="end2end")))

    assert [o.name for o in graph.graph.output] == ["output"]


def test_a_model_of_an_opset_before_slice_took_inputs_is_served_without_a_tail(tmp_path: Path) -> None:
    path = write_identity_model(tmp_path / "m.onnx")
    model = onnx.load(str(path))
    model.opset_import[0].version = 9
    onnx.save(model, path)

    graph = serving_graph(path, manifest())

    assert [o.name for o in onnx.load_model_from_string(graph).graph.output] == ["output"]
    assert run(graph, canvases(1)).shape == (1, 3, HEIGHT, WIDTH)
