"""The model graph a Detector runs: the registered model behind a prelude that takes letterboxed uint8 BGR canvases.

Invariant: for any [N, H, W, 3] uint8 batch ``canvases``, the fused graph's outputs equal the registered model's
outputs on ``models.preprocess.model_input(canvases, manifest)``: the prelude is the same cast, channel reordering,
multiply and add, in float32. So the fused graph serves on every provider; on a GPU it moves a quarter of the bytes
to the device and leaves the per-pixel arithmetic to it.

The registered file is never changed: the prelude is added in memory when a session is created.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from models.errors import ModelLoadError, OutputFormatMismatch
from models.manifest import ModelManifest
from models.preprocess import Normalisation

FUSED_INPUT = "camcount_canvases_bgr_uint8"
"""Name of the fused graph's input: [N, H, W, 3] uint8, BGR, letterboxed to the manifest's size."""
_PREFIX = "camcount_prelude/"


def fuse_uint8_input(onnx_path: Path, manifest: ModelManifest) -> bytes:
    """The model at ``onnx_path`` with the prelude in front of its image input, serialised.

    Raises OutputFormatMismatch when the model's image input is not [N, 3, H, W] with H, W the manifest's (or left
    open), and ModelLoadError when the file is not an ONNX model.
    """
    try:
        model = onnx.load(str(onnx_path))
    except Exception as exc:  # noqa: BLE001 - protobuf, OS and onnx errors alike
        raise ModelLoadError(f"cannot read {onnx_path} as an ONNX model: {exc}. Check that the file is a valid "
                             "ONNX model (re-export or re-register it)") from exc
    graph = model.graph
    image_input = _image_input(graph, manifest)
    batch = image_input.type.tensor_type.shape.dim[0]
    fused_input = helper.make_tensor_value_info(
        FUSED_INPUT, TensorProto.UINT8,
        [batch.dim_value if batch.HasField("dim_value") else (batch.dim_param or "N"),
         manifest.input_height, manifest.input_width, 3],
    )
    norm = Normalisation.of(manifest)
    nodes = [helper.make_node("Transpose", [FUSED_INPUT], [_PREFIX + "nchw"], name=_PREFIX + "to_nchw",
                              perm=[0, 3, 1, 2])]
    planes = _PREFIX + "nchw"
    initializers = [numpy_helper.from_array(norm.gain.reshape(1, 3, 1, 1), _PREFIX + "gain")]
    if norm.channel_order != (0, 1, 2):
        initializers.append(numpy_helper.from_array(np.asarray(norm.channel_order, np.int64), _PREFIX + "order"))
        nodes.append(helper.make_node("Gather", [planes, _PREFIX + "order"], [_PREFIX + "ordered"],
                                      name=_PREFIX + "channel_order", axis=1))
        planes = _PREFIX + "ordered"
    nodes.append(helper.make_node("Cast", [planes], [_PREFIX + "float"], name=_PREFIX + "to_float",
                                  to=TensorProto.FLOAT))
    scaled = image_input.name if not norm.has_bias else _PREFIX + "scaled"
    nodes.append(helper.make_node("Mul", [_PREFIX + "float", _PREFIX + "gain"], [scaled], name=_PREFIX + "scale"))
    if norm.has_bias:
        initializers.append(numpy_helper.from_array(norm.bias.reshape(1, 3, 1, 1), _PREFIX + "bias"))
        nodes.append(helper.make_node("Add", [scaled, _PREFIX + "bias"], [image_input.name], name=_PREFIX + "shift"))

    position = list(graph.input).index(image_input)
    graph.input.remove(image_input)
    graph.input.insert(position, fused_input)
    for node in reversed(nodes):
        graph.node.insert(0, node)
    graph.initializer.extend(initializers)
    return model.SerializeToString()


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
