"""The graph a Detector runs: the registered model between a uint8 prelude and a candidates tail.

- The **prelude** takes letterboxed uint8 BGR canvases [N, H, W, 3] and does the channel order, the layout change,
  the cast and the scaling in front of the model's image input, on whatever device the model runs.
- The **tail** (yolov5 and yolov8 formats) reduces each anchor's raw row (85 floats for COCO) to the 7 the host
  needs, ``CANDIDATES`` [N, A, 7]: x1, y1, x2, y2, score, class id, gate. Only it is copied back to the host.

Invariants: for any uint8 batch ``canvases``, the model's own outputs inside the serving graph equal its outputs on
``models.preprocess.model_input(canvases, manifest)``, and ``postprocess(candidates, "candidates")`` equals
``postprocess(raw output, manifest.format)``: both ends are the same float32 operations as the host code they
replace. The original outputs stay graph outputs, so a run can still ask for them (warm-up checks their shape).
The registered file is never changed: both ends are added in memory when a session is created.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from models.errors import ModelLoadError, OutputFormatMismatch
from models.manifest import ModelFormat, ModelManifest
from models.preprocess import Normalisation

SERVING_INPUT = "camcount_canvases_bgr_uint8"
"""Name of the serving graph's input: [N, H, W, 3] uint8, BGR, letterboxed to the manifest's size."""
CANDIDATES = "camcount_candidates"
"""Name of the tail's output: [N, A, 7] float32 rows of x1, y1, x2, y2, score, class id, gate. A row is a candidate
at threshold ``conf`` when score > conf and gate > conf (gate: objectness for yolov5, the score for yolov8)."""
_PRELUDE = "camcount_prelude/"
_TAIL = "camcount_tail/"
_TAIL_MIN_OPSET = 10  # Slice takes its bounds as inputs from opset 10
_INT64_MAX = np.iinfo(np.int64).max


def raw_output(output_names: Sequence[str]) -> str:
    """The model's own first output among a serving graph's outputs: the one its format describes."""
    return next(name for name in output_names if name != CANDIDATES)


def serving_graph(onnx_path: Path, manifest: ModelManifest) -> bytes:
    """The model at ``onnx_path`` with the prelude (and, for yolov5 and yolov8 outputs, the tail), serialised.

    Raises OutputFormatMismatch when the model's image input is not [N, 3, H, W] float with H, W the manifest's (or
    left open), and ModelLoadError when the file is not an ONNX model.
    """
    try:
        model = onnx.load(str(onnx_path))
    except Exception as exc:  # noqa: BLE001 - protobuf, OS and onnx errors alike
        raise ModelLoadError(f"cannot read {onnx_path} as an ONNX model: {exc}. Check that the file is a valid "
                             "ONNX model (re-export or re-register it)") from exc
    _add_uint8_prelude(model.graph, manifest)
    _add_candidates_tail(model, manifest.format)
    return model.SerializeToString()


def _add_uint8_prelude(graph: onnx.GraphProto, manifest: ModelManifest) -> None:
    image_input = _image_input(graph, manifest)
    batch = image_input.type.tensor_type.shape.dim[0]
    serving_input = helper.make_tensor_value_info(
        SERVING_INPUT, TensorProto.UINT8,
        [batch.dim_value if batch.HasField("dim_value") else (batch.dim_param or "N"),
         manifest.input_height, manifest.input_width, 3],
    )
    norm = Normalisation.of(manifest)
    nodes = [helper.make_node("Transpose", [SERVING_INPUT], [_PRELUDE + "nchw"], name=_PRELUDE + "to_nchw",
                              perm=[0, 3, 1, 2])]
    planes = _PRELUDE + "nchw"
    initializers = [numpy_helper.from_array(norm.gain.reshape(1, 3, 1, 1), _PRELUDE + "gain")]
    if norm.channel_order != (0, 1, 2):
        initializers.append(numpy_helper.from_array(np.asarray(norm.channel_order, np.int64), _PRELUDE + "order"))
        nodes.append(helper.make_node("Gather", [planes, _PRELUDE + "order"], [_PRELUDE + "ordered"],
                                      name=_PRELUDE + "channel_order", axis=1))
        planes = _PRELUDE + "ordered"
    nodes.append(helper.make_node("Cast", [planes], [_PRELUDE + "float"], name=_PRELUDE + "to_float",
                                  to=TensorProto.FLOAT))
    scaled = image_input.name if not norm.has_bias else _PRELUDE + "scaled"
    nodes.append(helper.make_node("Mul", [_PRELUDE + "float", _PRELUDE + "gain"], [scaled], name=_PRELUDE + "scale"))
    if norm.has_bias:
        initializers.append(numpy_helper.from_array(norm.bias.reshape(1, 3, 1, 1), _PRELUDE + "bias"))
        nodes.append(helper.make_node("Add", [scaled, _PRELUDE + "bias"], [image_input.name],
                                      name=_PRELUDE + "shift"))

    position = list(graph.input).index(image_input)
    graph.input.remove(image_input)
    graph.input.insert(position, serving_input)
    for node in reversed(nodes):
        graph.node.insert(0, node)
    graph.initializer.extend(initializers)


def _image_input(graph: onnx.GraphProto, manifest: ModelManifest) -> onnx.ValueInfoProto:
    """The graph's one non-initializer input, checked to be [N, 3, H, W] float with the manifest's H and W."""
    initializers = {tensor.name for tensor in graph.initializer}
    inputs = [value for value in graph.input if value.name not in initializers]
    expected = f"[N, 3, {manifest.input_height}, {manifest.input_width}]"
    if len(inputs) != 1:
        raise OutputFormatMismatch(f"the model has {len(inputs)} inputs; camcount feeds one image batch {expected}")
    image_input = inputs[0]
    tensor_type = image_input.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]
    wanted = (None, 3, manifest.input_height, manifest.input_width)
    if len(dims) != 4 or any(actual is not None and want is not None and actual != want
                             for actual, want in zip(dims, wanted)):
        shape = [d if d is not None else "?" for d in dims]
        raise OutputFormatMismatch(
            f"model input {image_input.name!r} has shape {shape}, but the manifest declares {expected}: "
            "fix input_width/input_height"
        )
    if tensor_type.elem_type != TensorProto.FLOAT:
        raise OutputFormatMismatch(
            f"model input {image_input.name!r} is {TensorProto.DataType.Name(tensor_type.elem_type)}; camcount feeds "
            "float32 images: export the model with a float input"
        )
    return image_input


def _add_candidates_tail(model: onnx.ModelProto, fmt: ModelFormat) -> None:
    """Append the tail after the first output, unless the format needs none (end2end rows are already small) or
    the graph cannot take it (a non-float output, an opset before Slice took its bounds as inputs): then the Detector
    decodes the raw output as before."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    graph = model.graph
    raw = graph.output[0]
    if fmt == "end2end" or opset < _TAIL_MIN_OPSET or raw.type.tensor_type.elem_type != TensorProto.FLOAT:
        return
    tail = _Tail(graph, opset)
    rows = raw.name
    if fmt == "yolov8":  # [N, 4+C, A] columns -> [N, A, 4+C] rows
        rows = tail.node("Transpose", [raw.name], "rows", perm=[0, 2, 1])
    centre, size = tail.slice(rows, 0, 2, "centre"), tail.slice(rows, 2, 4, "size")
    half = tail.node("Mul", [size, tail.constant("half", np.float32(0.5))], "half")
    top_left = tail.node("Sub", [centre, half], "top_left")
    bottom_right = tail.node("Add", [centre, half], "bottom_right")
    if fmt == "yolov5":  # score = objectness * best class probability, as decode_yolov5 computes it
        gate = tail.slice(rows, 4, 5, "objectness")
        class_scores = tail.node("Mul", [tail.slice(rows, 5, _INT64_MAX, "probabilities"), gate], "class_scores")
    else:
        class_scores = tail.slice(rows, 4, _INT64_MAX, "class_scores")
    score = tail.reduce_max(class_scores, "score")
    class_id = tail.node("Cast", [tail.node("ArgMax", [class_scores], "best", axis=2, keepdims=1)], "class_id",
                         to=TensorProto.FLOAT)
    columns = [top_left, bottom_right, score, class_id, gate if fmt == "yolov5" else score]
    tail.node("Concat", columns, "candidates", output=CANDIDATES, axis=2)
    graph.output.insert(0, helper.make_tensor_value_info(CANDIDATES, TensorProto.FLOAT, None))


class _Tail:
    """Builds the tail's nodes and constants under one name prefix, for the graph's opset."""

    def __init__(self, graph: onnx.GraphProto, opset: int) -> None:
        self.graph, self.opset = graph, opset

    def constant(self, name: str, value: np.ndarray | np.generic) -> str:
        self.graph.initializer.append(numpy_helper.from_array(np.asarray(value), _TAIL + "constant/" + name))
        return _TAIL + "constant/" + name

    def node(self, op: str, inputs: list[str], name: str, output: str | None = None, **attributes: object) -> str:
        """Append ``op`` writing ``output`` (default: the tail's tensor ``name``); returns the output's name."""
        out = output or _TAIL + name
        self.graph.node.append(helper.make_node(op, inputs, [out], name=out, **attributes))
        return out

    def slice(self, data: str, start: int, end: int, name: str) -> str:
        """``data[:, :, start:end]``."""
        bounds = [self.constant(f"{name}_{edge}", np.array([value], np.int64))
                  for edge, value in (("start", start), ("end", end), ("axis", 2))]
        return self.node("Slice", [data, *bounds], name)

    def reduce_max(self, data: str, name: str) -> str:
        """Max over the last axis, kept: ReduceMax took its axes as an attribute before opset 18, as an input since."""
        if self.opset >= 18:
            return self.node("ReduceMax", [data, self.constant(f"{name}_axes", np.array([2], np.int64))], name,
                             keepdims=1)
        return self.node("ReduceMax", [data], name, axes=[2], keepdims=1)
