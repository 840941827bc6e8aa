"""Accuracy benchmark (``camcount bench accuracy``): count labelled footage offline, compare with ground truth.

The counting line is the ground truth's own line (never one from a camera config), counted with the product
defaults of ``counting.config`` unless overridden; detections are requested down to the tracker's
``low_threshold``, so ByteTrack's second (low-confidence) stage sees the boxes it is designed for.
Figures: per-direction counts and error %, event-level precision and recall (``counting.evaluation``),
the misses and false positives with their frames, and the run time.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from benchmarks import GROUND_TRUTH_DIR
from foundation.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_TOLERANCE_FRAMES = 5


# Hand-checked crossings of line L1 in vtest.avi, shipped with the repository.
DEFAULT_TRUTH = GROUND_TRUTH_DIR / "vtest_L1.json"


def run_accuracy(
    settings: Settings,
    truth_path: Path,
    footage: Path | None = None,
    model_ref: str | None = None,
    line: str | None = None,
    tracker: dict[str, Any] | None = None,
    min_distance_px: float | None = None,
    conf: float | None = None,
    iou: float | None = None,
    tolerance_frames: int = DEFAULT_TOLERANCE_FRAMES,
    batch_size: int = 8,
) -> dict[str, Any]:
    """Analyse ``footage`` (default: the truth's ``video`` under ``<home>/data``) with ``model_ref`` (default:
    ``settings.model.reference``) and return the accuracy report as plain JSON.

    ``tracker`` holds TrackerConfig field overrides, ``min_distance_px`` overrides the line's hysteresis;
    ``conf`` defaults to the tracker's ``low_threshold``, ``iou`` to the model manifest's NMS threshold.
    """
    from camcount.offline import analyze
    from counting.config import CameraConfig, LineConfig, TrackerConfig
    from counting.evaluation import evaluate, load_line_truth
    from models.loading import load_detector
    from producers.encoding import JPEG_QUALITY
    from producers.sources import FrameSource

    truth = load_line_truth(truth_path, line)
    if footage is None:
        footage = settings.layout().data / json.loads(Path(truth_path).read_text(encoding="utf-8"))["video"]
    line_config = LineConfig(name=truth.name, start=truth.start, end=truth.end,
                             **({} if min_distance_px is None else {"min_distance_px": min_distance_px}))
    config = CameraConfig(camera_id="accuracy", lines=[line_config], tracker=TrackerConfig(**(tracker or {})))
    detection_conf = config.tracker.low_threshold if conf is None else conf
    reference = model_ref or settings.model.reference
    detector = load_detector(settings, reference, max_batch=batch_size)
    started = time.monotonic()
    result = analyze(FrameSource(str(footage)), config, detector, batch_size=batch_size,
                     jpeg_quality=JPEG_QUALITY, conf=detection_conf, iou=iou)
    seconds = time.monotonic() - started
    accuracy = evaluate(result.crossings, truth, tolerance_frames)
    logger.info("accuracy of %s on %s line %s: precision %.3f recall %.3f in %.1f s", reference, footage,
                truth.name, accuracy.precision, accuracy.recall, seconds)
    return {
        "truth": str(truth_path),
        "footage": str(footage),
        "model": f"{detector.name}@{detector.version}",
        "input_size": [detector.manifest.input_width, detector.manifest.input_height],
        "frames": result.frames,
        "seconds": round(seconds, 1),
        "fps": round(result.frames / max(seconds, 1e-9), 1),
        "detection": {"conf": detection_conf, "iou": detector.manifest.nms_threshold if iou is None else iou},
        "tracker": config.tracker.model_dump(),
        "line": line_config.model_dump(mode="json"),
        "accuracy": accuracy.as_json(),
    }
