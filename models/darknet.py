"""Darknet (YOLOv3/v4-tiny style) cfg + weights to ONNX, with numpy and onnx only.

ONNX contract of the produced model (the decoder depends on it exactly):

* input ``images``: float32 ``[batch, 3, H, W]``, RGB, values in [0, 1], H/W from the cfg ``[net]`` section.
* output ``output``: float32 ``[batch, A, 5 + C]``, one row per (head, cell, anchor):
  ``cx, cy, w, h`` in input pixels, then ``objectness = sigmoid``, then C class probabilities ``sigmoid``
  (not multiplied by objectness).
* row order: yolo heads in cfg order; inside a head, rows run over grid rows (y), then grid columns (x), then the
  head's anchors in ``mask`` order, anchor fastest: ``row = head_offset + (y * grid_w + x) * len(mask) + a``.
  This is the order of OpenCV's Region layer output, so the two can be compared row by row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from foundation.errors import CamcountError

logger = logging.getLogger(__name__)

INPUT_NAME = "images"
OUTPUT_NAME = "output"
BATCH_DIM = "batch"
LEAKY_SLOPE = 0.1
# OpenCV's darknet importer uses BatchNorm eps 1e-6 inside the square root; original darknet adds 1e-6 after it.
# They differ by < 3e-5 relative on YOLOv3-tiny's variances (smallest 0.013); we follow OpenCV, our reference.
BATCHNORM_EPS = 1e-6
_ACTIVATIONS = ("linear", "leaky", "logistic", "relu", "mish", "swish")
# Options that change a layer's result but that the converter does not implement, with their harmless value.
_UNSUPPORTED_OPTIONS: dict[str, dict[str, str]] = {
    "convolutional": {"dilation": "1", "stride_x": "-1", "stride_y": "-1", "antialiasing": "0", "binary": "0"},
    "maxpool": {"stride_x": "-1", "stride_y": "-1", "maxpool_depth": "0", "antialiasing": "0"},
    "upsample": {"scale": "1"},
    "shortcut": {"weights_type": "none"},
    "yolo": {"new_coords": "0"},
}


class DarknetImportError(CamcountError):
    """A cfg or weights file cannot be converted; the message says which file, section and what to change."""

    code = "MODEL_002"
    detail = "darknet-import-failed"


@dataclass(frozen=True)
class DarknetSection:
    """One ``[type]`` block of a cfg file.

    ``index`` is the position in the file (0 is ``[net]``); darknet's layer number is ``index - 1``.
    Option values are kept as the raw strings from the file; the typed accessors parse them and raise
    DarknetImportError naming the section when a value is missing or malformed.
    """

    index: int
    type: str
    options: dict[str, str] = field(default_factory=dict)

    @property
    def layer_index(self) -> int:
        return self.index - 1

    def describe(self) -> str:
        return f"section #{self.index} [{self.type}] (layer {self.layer_index})"

    def _raw(self, key: str, default: object) -> str | None:
        if key in self.options:
            return self.options[key]
        if default is None:
            raise DarknetImportError(f"{self.describe()} needs the option '{key}'; add '{key}=...' to the cfg")
        return None

    def get_int(self, key: str, default: int | None = None) -> int:
        raw = self._raw(key, default)
        if raw is None:
            return int(default)  # type: ignore[arg-type]
        try:
            return int(raw)
        except ValueError:
            raise DarknetImportError(f"{self.describe()}: '{key}={raw}' is not an integer") from None

    def get_float(self, key: str, default: float | None = None) -> float:
        raw = self._raw(key, default)
        if raw is None:
            return float(default)  # type: ignore[arg-type]
        try:
            return float(raw)
        except ValueError:
            raise DarknetImportError(f"{self.describe()}: '{key}={raw}' is not a number") from None

    def get_str(self, key: str, default: str | None = None) -> str:
        raw = self._raw(key, default)
        return default if raw is None else raw  # type: ignore[return-value]

    def get_ints(self, key: str) -> list[int]:
        raw = self._raw(key, None)
        try:
            return [int(v) for v in raw.split(",") if v.strip()]  # type: ignore[union-attr]
        except ValueError:
            raise DarknetImportError(
                f"{self.describe()}: '{key}={raw}' is not a comma-separated integer list"
            ) from None

    def get_floats(self, key: str) -> list[float]:
        raw = self._raw(key, None)
        try:
            return [float(v) for v in raw.split(",") if v.strip()]  # type: ignore[union-attr]
        except ValueError:
            raise DarknetImportError(
                f"{self.describe()}: '{key}={raw}' is not a comma-separated number list"
            ) from None


@dataclass(frozen=True)
class DarknetModelInfo:
    """What the converted model expects and produces; ``num_anchors_total`` is A in the output ``[N, A, 5 + C]``."""

    input_width: int
    input_height: int
    num_classes: int
    num_anchors_total: int


def parse_cfg(path: str | Path) -> list[DarknetSection]:
    """Parse a darknet cfg file into its sections, ``[net]`` first, as darknet reads it.

    Whitespace inside lines is ignored, ``#`` and ``;`` start comment lines.
    """
    path = Path(path)
    sections: list[DarknetSection] = []
    for line_no, raw_line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = "".join(raw_line.split())
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise DarknetImportError(f"{path}:{line_no}: section header {raw_line!r} is missing its ']'")
            sections.append(DarknetSection(index=len(sections), type=line[1:-1].lower()))
            continue
        key, sep, value = line.partition("=")
        if not sep or not key:
            raise DarknetImportError(f"{path}:{line_no}: expected 'key=value' or '[section]', got {raw_line!r}")
        if not sections:
            raise DarknetImportError(f"{path}:{line_no}: option {key!r} appears before the first [section]")
        sections[-1].options[key] = value
    if not sections or sections[0].type not in ("net", "network"):
        raise DarknetImportError(f"{path}: a darknet cfg must start with a [net] section")
    return sections


def load_class_names(path: str | Path) -> list[str]:
    """Class names, one a line, as in darknet's ``coco.names``; line i is class id i.

    Trailing blank lines are ignored; a blank line between names would shift the ids, so it is an error.
    """
    path = Path(path)
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise DarknetImportError(f"{path} holds no class names; expected one name per line")
    blank = [i + 1 for i, name in enumerate(names) if not name]
    if blank:
        raise DarknetImportError(
            f"{path}: blank line(s) {blank} between class names would shift class ids; remove them"
        )
    return names


@dataclass(frozen=True)
class _Shape:
    channels: int
    height: int
    width: int


@dataclass(frozen=True)
class _LayerOutput:
    tensor: str
    shape: _Shape


class _WeightReader:
    """Hands out consecutive float32 runs of the weights file; fails naming the section that runs past its end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        data = path.read_bytes()
        if len(data) < 12:
            raise DarknetImportError(f"weights file {path} is {len(data)} bytes, shorter than a darknet header")
        major, minor, _revision = np.frombuffer(data, dtype=np.int32, count=3)
        seen_bytes = 8 if major * 10 + minor >= 2 else 4
        self.header_bytes = 12 + seen_bytes
        body = data[self.header_bytes :]
        if len(body) % 4:
            raise DarknetImportError(
                f"weights file {path} has {len(body)} bytes after its header, not a whole number of float32s; "
                "the file is truncated or not a darknet weights file"
            )
        self.values = np.frombuffer(body, dtype="<f4")
        self.offset = 0

    def take(self, count: int, section: DarknetSection, what: str) -> np.ndarray:
        end = self.offset + count
        if end > len(self.values):
            raise DarknetImportError(
                f"weights file {self.path} is too short for the cfg: it ends in {section.describe()} "
                f"while reading {what} (needs {end} floats so far, the file has {len(self.values)}). "
                "Re-download the weights, or check that they belong to this cfg"
            )
        run = self.values[self.offset : end]
        self.offset = end
        return run

    def check_consumed(self) -> None:
        extra = len(self.values) - self.offset
        if extra:
            raise DarknetImportError(
                f"weights file {self.path} is too long for the cfg: {extra} floats are left after the last layer "
                f"(the cfg uses {self.offset}). The weights belong to a different cfg"
            )


class _GraphBuilder:
    """Accumulates ONNX nodes and initializers with unique names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._counter = 0

    def name(self, stem: str) -> str:
        self._counter += 1
        return f"{stem}_{self._counter}"

    def const(self, stem: str, value: np.ndarray) -> str:
        name = self.name(stem)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(
        self, op: str, inputs: list[str], *, outputs: int = 1, output_name: str | None = None, **attrs: object
    ) -> list[str]:
        names = [output_name] if output_name else [self.name(op.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op, inputs, names, name=self.name(f"{op}_node"), **attrs))
        return names

    def op(self, op: str, inputs: list[str], **attrs: object) -> str:
        return self.node(op, inputs, **attrs)[0]


def _reject_unsupported_options(section: DarknetSection, layer_type: str) -> None:
    for key, harmless in _UNSUPPORTED_OPTIONS.get(layer_type, {}).items():
        value = section.options.get(key, harmless)
        if _as_number(value) != _as_number(harmless):
            raise DarknetImportError(
                f"{section.describe()}: option '{key}={value}' is not supported by this converter; "
                f"remove it or set '{key}={harmless}'"
            )


def _as_number(value: str) -> float | str:
    try:
        return float(value)
    except ValueError:
        return value


def _activation(builder: _GraphBuilder, x: str, section: DarknetSection) -> str:
    kind = section.get_str("activation", "linear")
    if kind == "linear":
        return x
    if kind == "leaky":
        return builder.op("LeakyRelu", [x], alpha=LEAKY_SLOPE)
    if kind == "logistic":
        return builder.op("Sigmoid", [x])
    if kind == "relu":
        return builder.op("Relu", [x])
    if kind == "mish":
        return builder.op("Mul", [x, builder.op("Tanh", [builder.op("Softplus", [x])])])
    if kind == "swish":
        return builder.op("Mul", [x, builder.op("Sigmoid", [x])])
    raise DarknetImportError(
        f"{section.describe()}: activation '{kind}' is not supported; supported: {', '.join(_ACTIVATIONS)}"
    )


def _convolutional(
    builder: _GraphBuilder, section: DarknetSection, x: _LayerOutput, weights: _WeightReader
) -> _LayerOutput:
    filters = section.get_int("filters")
    size = section.get_int("size", 1)
    stride = section.get_int("stride", 1)
    groups = section.get_int("groups", 1)
    pad = size // 2 if section.get_int("pad", 0) else section.get_int("padding", 0)
    channels = x.shape.channels
    if channels % groups or filters % groups:
        raise DarknetImportError(
            f"{section.describe()}: groups={groups} must divide input channels ({channels}) and filters ({filters})"
        )
    biases = weights.take(filters, section, "biases")
    if section.get_int("batch_normalize", 0):
        scales = weights.take(filters, section, "batch-norm scales")
        mean = weights.take(filters, section, "batch-norm rolling mean")
        var = weights.take(filters, section, "batch-norm rolling variance")
        if not np.all(np.isfinite(var) & (var >= 0)):
            raise DarknetImportError(
                f"{section.describe()}: weights file {weights.path} gives negative or non-finite batch-norm "
                "variances here, so its values are misaligned with the cfg; use the weights trained with this cfg"
            )
        factor = scales / np.sqrt(var + np.float32(BATCHNORM_EPS))
        bias = biases - mean * factor
    else:
        factor = np.ones(filters, dtype=np.float32)
        bias = biases
    kernel = weights.take(filters * (channels // groups) * size * size, section, "convolution weights")
    kernel = kernel.reshape(filters, channels // groups, size, size) * factor[:, None, None, None]
    kernel_name = builder.const("conv_w", kernel.astype(np.float32))
    conv = builder.op(
        "Conv",
        [x.tensor, kernel_name, builder.const("conv_b", bias.astype(np.float32))],
        kernel_shape=[size, size],
        strides=[stride, stride],
        pads=[pad, pad, pad, pad],
        group=groups,
    )
    out_h = (x.shape.height + 2 * pad - size) // stride + 1
    out_w = (x.shape.width + 2 * pad - size) // stride + 1
    return _LayerOutput(_activation(builder, conv, section), _Shape(filters, out_h, out_w))


def _maxpool_extent(length: int, size: int, stride: int, padding: int) -> tuple[int, int, int]:
    """Darknet's maxpool geometry along one axis: (output length, pad before, pad after).

    Darknet pads ``padding`` (default ``size - 1``) in total, ``padding // 2`` before, so a size-2 pool
    pads only on the right/bottom. The pad after is the exact amount the last window reaches past the input.
    """
    out = (length + padding - size) // stride + 1
    before = padding // 2
    after = max(0, (out - 1) * stride + size - length - before)
    return out, before, after


def _maxpool(builder: _GraphBuilder, section: DarknetSection, x: _LayerOutput) -> _LayerOutput:
    size = section.get_int("size", 1)
    stride = section.get_int("stride", 1)
    padding = section.get_int("padding", size - 1)
    out_h, top, bottom = _maxpool_extent(x.shape.height, size, stride, padding)
    out_w, left, right = _maxpool_extent(x.shape.width, size, stride, padding)
    pooled = builder.op(
        "MaxPool", [x.tensor], kernel_shape=[size, size], strides=[stride, stride], pads=[top, left, bottom, right]
    )
    return _LayerOutput(pooled, _Shape(x.shape.channels, out_h, out_w))


def _referenced(section: DarknetSection, outputs: list[_LayerOutput | None], ref: int) -> _LayerOutput:
    """The output of the layer ``ref`` points to (negative: relative to ``section``); None marks a yolo layer."""
    index = section.layer_index + ref if ref < 0 else ref
    if not 0 <= index < section.layer_index:
        raise DarknetImportError(f"{section.describe()} refers to layer {ref}, which is not an earlier layer")
    found = outputs[index]
    if found is None:
        raise DarknetImportError(f"{section.describe()} refers to layer {index}, a [yolo] layer; that is not supported")
    return found


def _route(builder: _GraphBuilder, section: DarknetSection, outputs: list[_LayerOutput | None]) -> _LayerOutput:
    sources = [_referenced(section, outputs, ref) for ref in section.get_ints("layers")]
    groups = section.get_int("groups", 1)
    group_id = section.get_int("group_id", 0)
    if not 0 <= group_id < groups:
        raise DarknetImportError(f"{section.describe()}: group_id={group_id} must be in [0, groups={groups})")
    if len({(s.shape.height, s.shape.width) for s in sources}) != 1:
        raise DarknetImportError(
            f"{section.describe()} concatenates layers of different spatial sizes "
            f"{[(s.shape.height, s.shape.width) for s in sources]}"
        )
    parts: list[str] = []
    channels = 0
    for source in sources:
        if source.shape.channels % groups:
            raise DarknetImportError(
                f"{section.describe()}: groups={groups} does not divide the {source.shape.channels} routed channels"
            )
        part = source.shape.channels // groups
        if groups == 1:
            parts.append(source.tensor)
        else:
            parts.append(
                builder.op(
                    "Slice",
                    [
                        source.tensor,
                        builder.const("starts", np.array([group_id * part], dtype=np.int64)),
                        builder.const("ends", np.array([(group_id + 1) * part], dtype=np.int64)),
                        builder.const("axes", np.array([1], dtype=np.int64)),
                    ],
                )
            )
        channels += part
    tensor = parts[0] if len(parts) == 1 else builder.op("Concat", parts, axis=1)
    return _LayerOutput(tensor, _Shape(channels, sources[0].shape.height, sources[0].shape.width))


def _shortcut(
    builder: _GraphBuilder, section: DarknetSection, x: _LayerOutput, outputs: list[_LayerOutput | None]
) -> _LayerOutput:
    refs = section.get_ints("from")
    if len(refs) != 1:
        raise DarknetImportError(f"{section.describe()}: only a single 'from' layer is supported, got {refs}")
    other = _referenced(section, outputs, refs[0])
    if other.shape != x.shape:
        raise DarknetImportError(
            f"{section.describe()}: shortcut of differently shaped layers {other.shape} and {x.shape} is not supported"
        )
    summed = builder.op("Add", [x.tensor, other.tensor])
    return _LayerOutput(_activation(builder, summed, section), x.shape)


def _upsample(builder: _GraphBuilder, section: DarknetSection, x: _LayerOutput) -> _LayerOutput:
    stride = section.get_int("stride", 2)
    if stride < 1:
        raise DarknetImportError(f"{section.describe()}: only upsampling (stride >= 1) is supported, got {stride}")
    scales = builder.const("scales", np.array([1, 1, stride, stride], dtype=np.float32))
    resized = builder.op(
        "Resize",
        [x.tensor, "", scales],
        mode="nearest",
        coordinate_transformation_mode="asymmetric",
        nearest_mode="floor",
    )
    shape = _Shape(x.shape.channels, x.shape.height * stride, x.shape.width * stride)
    return _LayerOutput(resized, shape)


@dataclass(frozen=True)
class _YoloHead:
    tensor: str
    rows: int
    classes: int


def _yolo(builder: _GraphBuilder, section: DarknetSection, x: _LayerOutput, net_w: int, net_h: int) -> _YoloHead:
    """Decode one head to ``[N, gh * gw * A, 5 + C]`` rows in (y, x, anchor) order, boxes in input pixels."""
    classes = section.get_int("classes")
    anchors = np.asarray(section.get_floats("anchors"), dtype=np.float32).reshape(-1, 2)
    mask = section.get_ints("mask") if "mask" in section.options else list(range(len(anchors)))
    if any(not 0 <= m < len(anchors) for m in mask):
        raise DarknetImportError(f"{section.describe()}: mask {mask} indexes outside the {len(anchors)} anchors")
    scale_xy = section.get_float("scale_x_y", 1.0)
    num = len(mask)
    cell = 5 + classes
    gh, gw = x.shape.height, x.shape.width
    if x.shape.channels != num * cell:
        raise DarknetImportError(
            f"{section.describe()}: the layer before has {x.shape.channels} filters but {num} anchors x "
            f"(5 + {classes} classes) = {num * cell} are needed; fix 'filters' of the preceding [convolutional]"
        )
    rows = gh * gw * num
    grid = builder.op("Reshape", [x.tensor, builder.const("shape", np.array([0, num, cell, gh, gw], dtype=np.int64))])
    cells = builder.op("Transpose", [grid], perm=[0, 3, 4, 1, 2])
    flat = builder.op("Reshape", [cells, builder.const("shape", np.array([0, rows, cell], dtype=np.int64))])
    txy, twh, tconf = builder.node(
        "Split", [flat, builder.const("split", np.array([2, 2, 1 + classes], dtype=np.int64))], outputs=3, axis=2
    )
    # cx = ((sigmoid(tx) - 0.5) * s + 0.5 + grid_x) / gw * W, folded into one multiply and one add.
    step = np.array([net_w / gw, net_h / gh], dtype=np.float64)
    yy, xx, _ = np.meshgrid(np.arange(gh), np.arange(gw), np.arange(num), indexing="ij")
    cell_xy = np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float64)
    offset = ((cell_xy + 0.5 * (1.0 - scale_xy)) * step).astype(np.float32)
    xy = builder.op(
        "Add",
        [
            builder.op(
                "Mul", [builder.op("Sigmoid", [txy]), builder.const("xy_scale", (scale_xy * step).astype(np.float32))]
            ),
            builder.const("xy_offset", offset),
        ],
    )
    anchor_wh = np.tile(anchors[mask], (gh * gw, 1)).astype(np.float32)
    wh = builder.op("Mul", [builder.op("Exp", [twh]), builder.const("anchor_wh", anchor_wh)])
    decoded = builder.op("Concat", [xy, wh, builder.op("Sigmoid", [tconf])], axis=2)
    return _YoloHead(decoded, rows, classes)


def darknet_to_onnx(
    cfg_path: str | Path,
    weights_path: str | Path,
    onnx_path: str | Path,
    *,
    opset: int = 17,
    input_size: tuple[int, int] | None = None,
) -> DarknetModelInfo:
    """Convert a darknet cfg + weights pair into an ONNX model following the module's contract.

    ``input_size`` (width, height) overrides the cfg's ``[net]`` size: the network is fully convolutional and
    anchors are in input pixels, so it runs unchanged at any size that is a multiple of its largest stride
    (32 for YOLOv3/v4-tiny); a larger input finds smaller (farther) objects at a higher cost.

    Supported sections: convolutional (batch norm folded), maxpool, route (incl. groups/group_id), shortcut,
    upsample, yolo (incl. scale_x_y). Anything else raises DarknetImportError naming the section.
    """
    cfg_path, weights_path, onnx_path = Path(cfg_path), Path(weights_path), Path(onnx_path)
    if opset < 13:
        raise DarknetImportError(f"opset {opset} is too old: the graph uses opset-13 Split/Resize; use opset >= 13")
    sections = parse_cfg(cfg_path)
    net = sections[0]
    width, height = input_size or (net.get_int("width"), net.get_int("height"))
    if width <= 0 or height <= 0:
        raise DarknetImportError(f"input size must be positive, got {width}x{height}")
    if net.get_int("channels", 3) != 3:
        raise DarknetImportError(f"{cfg_path}: [net] channels must be 3 (RGB input), got {net.get_int('channels')}")
    weights = _WeightReader(weights_path)
    builder = _GraphBuilder()
    outputs: list[_LayerOutput | None] = []  # index = darknet layer; None for yolo layers, which nothing may use
    heads: list[_YoloHead] = []
    current = _LayerOutput(INPUT_NAME, _Shape(3, height, width))
    for section in sections[1:]:
        layer_type = {"conv": "convolutional", "max": "maxpool"}.get(section.type, section.type)
        if outputs and outputs[-1] is None and layer_type != "route":
            raise DarknetImportError(f"{section.describe()} follows a [yolo] layer; route to an earlier layer first")
        _reject_unsupported_options(section, layer_type)
        if layer_type == "convolutional":
            current = _convolutional(builder, section, current, weights)
        elif layer_type == "maxpool":
            current = _maxpool(builder, section, current)
        elif layer_type == "route":
            current = _route(builder, section, outputs)
        elif layer_type == "shortcut":
            current = _shortcut(builder, section, current, outputs)
        elif layer_type == "upsample":
            current = _upsample(builder, section, current)
        elif layer_type == "yolo":
            heads.append(_yolo(builder, section, current, width, height))
            outputs.append(None)
            continue
        else:
            raise DarknetImportError(
                f"{cfg_path}: {section.describe()} is not supported; supported types: "
                "convolutional, maxpool, route, shortcut, upsample, yolo"
            )
        outputs.append(current)
    weights.check_consumed()
    if not heads:
        raise DarknetImportError(f"{cfg_path} has no [yolo] section, so the model would have no detections")
    classes = {head.classes for head in heads}
    if len(classes) != 1:
        raise DarknetImportError(f"{cfg_path}: yolo heads disagree on the number of classes: {sorted(classes)}")
    num_classes = classes.pop()
    total_rows = sum(head.rows for head in heads)
    if len(heads) == 1:
        builder.node("Identity", [heads[0].tensor], output_name=OUTPUT_NAME)
    else:
        builder.node("Concat", [head.tensor for head in heads], output_name=OUTPUT_NAME, axis=1)

    graph = helper.make_graph(
        builder.nodes,
        cfg_path.stem,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [BATCH_DIM, 3, height, width])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [BATCH_DIM, total_rows, 5 + num_classes])],
        initializer=builder.initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="camcount.models.darknet"
    )
    model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
    onnx.checker.check_model(model, full_check=True)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, onnx_path)
    info = DarknetModelInfo(width, height, num_classes, total_rows)
    logger.info(
        "converted %s (%d yolo heads) to %s: input [N,3,%d,%d], output [N,%d,%d]",
        cfg_path.name, len(heads), onnx_path, height, width, total_rows, 5 + num_classes,
    )
    return info
