"""Static int8 quantization of a registered model, and how far the int8 version agrees with its fp32 parent.

The int8 model is QDQ (QuantizeLinear/DequantizeLinear pairs around quantized ops), weights per channel, activation
ranges calibrated by running real frames through the model's own letterbox preprocessing. Agreement is measured on
held-out frames that calibration never saw, treating the fp32 detections as ground truth.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

from models.agreement import MATCH_IOU, average_precision, match_detections
from models.detections import Detections
from models.detector import Detector
from models.errors import ModelNotFound, ModelVersionExists
from models.manifest import ModelManifest, is_semver
from models.preprocess import BatchPreprocessor, model_input
from models.registry import ModelReference, ModelRegistry, RegisteredModel
from models.runtime import CPU

logger = logging.getLogger(__name__)

SPEED_BATCH_SIZES = (1, 8)
# Ops whose presence marks the learned part of a network; nodes after the last of them are the decode tail.
_LEARNED_OPS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm"})

Exclusion = Literal["none", "decode", "head"]
"""What stays fp32: nothing; the decode tail after the last learned layers (sigmoid/exp box decoding, reshapes,
concatenation); or the decode tail plus the final learned layers that feed it (the detection-head convolutions)."""


@dataclass(frozen=True)
class SpeedFigures:
    """Median inference milliseconds per batch of ``batch_size`` held-out frames, fp32 vs int8, same run."""

    batch_size: int
    fp32_infer_ms: float
    int8_infer_ms: float

    @property
    def speedup(self) -> float:
        return self.fp32_infer_ms / self.int8_infer_ms


@dataclass(frozen=True)
class Agreement:
    """int8 detections scored against fp32 detections as ground truth (same class, IoU >= 0.5, greedy by score).

    ``precision`` = matched / int8 boxes, ``recall`` = matched / fp32 boxes (1.0 when the denominator is 0);
    ``map50`` = mean over fp32 classes of all-point-interpolated average precision, ``ap50_by_class`` its terms
    with ``fp32_boxes_by_class`` (a rare class weighs as much as a frequent one in the mean).
    """

    frames: int
    fp32_boxes: int
    int8_boxes: int
    matched: int
    precision: float
    recall: float
    map50: float
    ap50_by_class: dict[int, float]
    fp32_boxes_by_class: dict[int, int]


@dataclass(frozen=True)
class QuantizationReport:
    parent: str
    quantized: str
    calibration_frames: int
    heldout_frames: int
    excluded_nodes: tuple[str, ...]
    quantize_s: float
    speed: tuple[SpeedFigures, ...]
    agreement: Agreement

    def as_json(self) -> dict[str, Any]:
        report = asdict(self)
        report["speed"] = [asdict(s) | {"speedup": round(s.speedup, 3)} for s in self.speed]
        return report


class LetterboxCalibrationReader(CalibrationDataReader):
    """Feeds frames one at a time, letterboxed and normalised exactly as the Detector will at inference time."""

    def __init__(self, manifest: ModelManifest, input_name: str, frames: Sequence[np.ndarray]) -> None:
        self._manifest = manifest
        self._preprocessor = BatchPreprocessor(manifest, max_batch=1)
        self._input_name = input_name
        self._frames: Iterator[np.ndarray] = iter(frames)

    def get_next(self) -> dict[str, np.ndarray] | None:
        frame = next(self._frames, None)
        if frame is None:
            return None
        self._preprocessor.fill(0, frame)
        return {self._input_name: model_input(self._preprocessor.batch(1), self._manifest)}


def interleave_split(count: int, first: int) -> tuple[list[int], list[int]]:
    """Positions ``0..count-1`` split into ``first`` and ``count - first`` disjoint, evenly interleaved positions.

    With ``first == count - first`` the split alternates (0, 2, 4, ... and 1, 3, 5, ...).
    """
    if not 0 <= first <= count:
        raise ValueError(f"cannot take {first} of {count} positions")
    a = [i for i in range(count) if i * first // count != (i - 1) * first // count]
    taken = set(a)
    return a, [i for i in range(count) if i not in taken]


def name_nodes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give every unnamed node a unique name (``OpType_index``) in place: exclusions are by node name."""
    taken = {node.name for node in model.graph.node if node.name}
    for index, node in enumerate(model.graph.node):
        if not node.name:
            candidate = f"{node.op_type}_{index}"
            while candidate in taken:
                candidate += "_"
            node.name = candidate
            taken.add(candidate)
    return model


def decode_tail_nodes(model: onnx.ModelProto, exclude: Exclusion) -> list[str]:
    """Names of the nodes ``exclude`` keeps in fp32 (see ``Exclusion``), in graph order.

    Requires a topologically sorted graph (as ONNX mandates) whose nodes have names (see ``name_nodes``).
    """
    nodes = list(model.graph.node)
    consumers: dict[str, list[int]] = {}
    for index, node in enumerate(nodes):
        for name in node.input:
            consumers.setdefault(name, []).append(index)
    # Walk backwards: a node feeds learned layers if one of its consumers is learned or feeds one.
    feeds_learned = [False] * len(nodes)
    for index in reversed(range(len(nodes))):
        downstream = [c for out in nodes[index].output for c in consumers.get(out, [])]
        feeds_learned[index] = any(nodes[c].op_type in _LEARNED_OPS or feeds_learned[c] for c in downstream)
    learned = [node.op_type in _LEARNED_OPS for node in nodes]
    tail = {i for i in range(len(nodes)) if not learned[i] and not feeds_learned[i]}
    if exclude == "none":
        tail = set()
    elif exclude == "head":
        tail_inputs = {name for i in tail for name in nodes[i].input}
        tail |= {i for i in range(len(nodes))
                 if learned[i] and not feeds_learned[i] and any(out in tail_inputs for out in nodes[i].output)}
    return [nodes[i].name for i in sorted(tail)]


def agreement(
    predicted: Sequence[Detections], truth: Sequence[Detections], iou_threshold: float = MATCH_IOU
) -> Agreement:
    """Score per-frame ``predicted`` detections against ``truth`` detections of the same frames."""
    if len(predicted) != len(truth):
        raise ValueError(f"{len(predicted)} predicted frames but {len(truth)} ground-truth frames")
    flags = [match_detections(p, t, iou_threshold) for p, t in zip(predicted, truth)]
    matched = np.concatenate(flags) if flags else np.zeros(0, dtype=bool)
    confidence = np.concatenate([p.confidence for p in predicted]) if predicted else np.zeros(0, np.float32)
    classes = np.concatenate([p.class_id for p in predicted]) if predicted else np.zeros(0, np.int32)
    truth_classes = np.concatenate([t.class_id for t in truth]) if truth else np.zeros(0, np.int32)
    truths_by_class = {int(c): int(n) for c, n in zip(*np.unique(truth_classes, return_counts=True))}
    aps = {
        c: average_precision(confidence[classes == c], matched[classes == c], n) for c, n in truths_by_class.items()
    }
    hits = int(matched.sum())
    return Agreement(
        frames=len(truth),
        fp32_boxes=len(truth_classes),
        int8_boxes=len(matched),
        matched=hits,
        precision=hits / len(matched) if len(matched) else 1.0,
        recall=hits / len(truth_classes) if len(truth_classes) else 1.0,
        map50=float(np.mean(list(aps.values()))) if aps else 1.0,
        ap50_by_class=aps,
        fp32_boxes_by_class=truths_by_class,
    )


def quantize_static_int8(
    registry: ModelRegistry,
    source_ref: str,
    new_version: str,
    calibration_frames: list[np.ndarray],
    heldout_frames: list[np.ndarray],
    exclude: Exclusion = "decode",
) -> QuantizationReport:
    """Calibrate, quantize and register ``source_ref`` as ``NAME@new_version`` (precision int8), then compare it.

    The new version keeps every manifest field of its parent but version, precision, sha256, created_at and
    source (``{"kind": "quantized", "parent": "name@version", "calibration_frames": n, "exclude": ...}``).
    Raises ModelVersionExists before any work when ``new_version`` is taken, ModelNotFound for an unknown parent,
    ValueError for a parent that is not fp32.
    """
    if not is_semver(new_version):
        raise ValueError(f"{new_version!r} is not a semantic version: use MAJOR.MINOR.PATCH, e.g. 1.1.0")
    if not calibration_frames or len(heldout_frames) < max(SPEED_BATCH_SIZES):
        raise ValueError(
            f"quantization needs at least one calibration frame and {max(SPEED_BATCH_SIZES)} held-out frames "
            f"(got {len(calibration_frames)} and {len(heldout_frames)}): give more frames"
        )
    parent = registry.verify(source_ref)
    name = parent.manifest.name
    if parent.manifest.precision != "fp32":
        raise ValueError(
            f"{name}@{parent.manifest.version} is {parent.manifest.precision}: quantize its fp32 parent "
            f"({parent.manifest.source.get('parent', 'see its manifest source')}) instead"
        )
    _refuse_existing(registry, name, new_version)

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="camcount-quantize-") as tmp:
        int8_path = Path(tmp) / "model.int8.onnx"
        excluded = _quantize(parent, int8_path, calibration_frames, exclude)
        quantize_s = time.perf_counter() - start
        fields = parent.manifest.model_dump(exclude={"version", "precision", "sha256", "created_at", "source"})
        lineage = {
            "kind": "quantized",
            "parent": f"{name}@{parent.manifest.version}",
            "calibration_frames": len(calibration_frames),
            "exclude": exclude,
        }
        manifest = registry.register(
            int8_path, sample_image=heldout_frames[0], version=new_version, precision="int8", source=lineage, **fields
        )
    quantized = registry.resolve(ModelReference(name=name, selector=manifest.version))
    logger.info("quantized %s -> %s@%s in %.1f s (%d nodes kept fp32)", lineage["parent"], name, new_version,
                quantize_s, len(excluded))
    speed, fp32_dets, int8_dets = _compare(parent, quantized, heldout_frames)
    return QuantizationReport(
        parent=lineage["parent"],
        quantized=f"{name}@{new_version}",
        calibration_frames=len(calibration_frames),
        heldout_frames=len(heldout_frames),
        excluded_nodes=tuple(excluded),
        quantize_s=quantize_s,
        speed=speed,
        agreement=agreement(int8_dets, fp32_dets),
    )


def _refuse_existing(registry: ModelRegistry, name: str, version: str) -> None:
    try:
        registry.resolve(ModelReference(name=name, selector=version))
    except ModelNotFound:
        return
    raise ModelVersionExists(
        f"{name}@{version} is already registered and versions are immutable: quantize into a new version"
    )


def _quantize(parent: RegisteredModel, output: Path, frames: Sequence[np.ndarray], exclude: Exclusion) -> list[str]:
    model = name_nodes(onnx.load(str(parent.path)))
    excluded = decode_tail_nodes(model, exclude)
    reader = LetterboxCalibrationReader(parent.manifest, model.graph.input[0].name, frames)
    quantize_static(
        model,
        str(output),
        reader,
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        # uint8 activations x int8 weights is what ONNX Runtime's CPU kernels (VNNI or not) run fastest.
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=excluded,
        calibrate_method=CalibrationMethod.MinMax,
        calibration_providers=[CPU],
    )
    return excluded


def _compare(
    parent: RegisteredModel, quantized: RegisteredModel, frames: Sequence[np.ndarray]
) -> tuple[tuple[SpeedFigures, ...], list[Detections], list[Detections]]:
    """Speed at each of SPEED_BATCH_SIZES (fp32 and int8 batches alternate, so both see the same machine load)
    and both models' detections of every frame (from the last pass). Requires len(frames) >= max batch size."""
    max_batch = max(SPEED_BATCH_SIZES)
    fp32 = Detector.from_model(parent, providers=[CPU], max_batch=max_batch)
    int8 = Detector.from_model(quantized, providers=[CPU], max_batch=max_batch)
    speed = []
    detections: dict[str, list[Detections]] = {"fp32": [], "int8": []}
    for batch_size in SPEED_BATCH_SIZES:
        times: dict[str, list[float]] = {"fp32": [], "int8": []}
        detections = {"fp32": [], "int8": []}
        for start in range(0, len(frames), batch_size):
            chunk = frames[start : start + batch_size]
            for label, detector in (("fp32", fp32), ("int8", int8)):
                detections[label].extend(detector.detect(chunk))
                if len(chunk) == batch_size:
                    times[label].append(detector.last_timings.infer_ms)
        speed.append(SpeedFigures(batch_size, statistics.median(times["fp32"]), statistics.median(times["int8"])))
    return tuple(speed), detections["fp32"], detections["int8"]
