"""``camcount bench accuracy``: count labelled footage offline and compare the crossings with the ground truth.

The counting line is the ground truth's own line (never one from a camera config), counted with the product
defaults of ``counting.config`` unless overridden; detections are requested down to the tracker's
``low_threshold``, so ByteTrack's second (low-confidence) stage sees the boxes it is designed for.
Figures: per-direction counts and error %, event-level precision and recall (``counting.evaluation``),
the misses and false positives with their frames, and the run time.
"""

from __future__ import annotations

import argparse
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
    from models.loading import load_detector
    from camcount.offline import INGEST_JPEG_QUALITY, analyze
    from counting.config import CameraConfig, LineConfig, TrackerConfig
    from counting.evaluation import evaluate, load_line_truth
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
                     jpeg_quality=INGEST_JPEG_QUALITY, conf=detection_conf, iou=iou)
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


def _tracker_override(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE, e.g. max_gap_frames=40")
    return key, json.loads(value)


def add_accuracy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--truth", metavar="PATH",
                        help="ground-truth JSON (default: benchmarks/ground_truth/vtest_L1.json)")
    parser.add_argument("--line", help="which line of the truth file (default: its only line)")
    parser.add_argument("--footage", metavar="PATH", help="video (default: the truth's 'video' under <home>/data)")
    parser.add_argument("--model", help="NAME[@VERSION|@ALIAS] (default: settings.model.reference)")
    parser.add_argument("--conf", type=float, help="detection confidence threshold (default: tracker low_threshold)")
    parser.add_argument("--iou", type=float, help="NMS IoU threshold (default: the model manifest's)")
    parser.add_argument("--tracker", type=_tracker_override, action="append", default=[], metavar="KEY=VALUE",
                        help="TrackerConfig override, repeatable, e.g. --tracker max_gap_frames=40")
    parser.add_argument("--min-distance-px", type=float, help="line hysteresis override")
    parser.add_argument("--tolerance-frames", type=int, default=DEFAULT_TOLERANCE_FRAMES,
                        help="an emitted crossing matches a label of the same direction within this many frames")
    parser.add_argument("--batch", type=int, default=8, help="frames per model execution")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def cmd_accuracy(settings: Settings, args: argparse.Namespace) -> int:
    report = run_accuracy(
        settings,
        Path(args.truth) if args.truth else DEFAULT_TRUTH,
        footage=Path(args.footage) if args.footage else None,
        model_ref=args.model,
        line=args.line,
        tracker=dict(args.tracker),
        min_distance_px=args.min_distance_px,
        conf=args.conf,
        iou=args.iou,
        tolerance_frames=args.tolerance_frames,
        batch_size=args.batch,
    )
    if args.json:
        print(json.dumps(report))
        return 0
    accuracy = report["accuracy"]
    width, height = report["input_size"]
    print(f"{report['footage']}: {report['frames']} frames in {report['seconds']} s ({report['fps']} fps), "
          f"model {report['model']} at {width}x{height}, conf {report['detection']['conf']}, "
          f"nms {report['detection']['iou']}")
    for direction, figures in accuracy["directions"].items():
        error = "n/a" if figures["error_pct"] is None else f"{figures['error_pct']:+.1f}%"
        print(f"  line {accuracy['line']} {direction:<3}: {figures['emitted']} counted, {figures['truth']} labelled "
              f"({error})")
    print(f"  events within +-{accuracy['tolerance_frames']} frames: {accuracy['matched']} matched, "
          f"precision {accuracy['precision']:.3f}, recall {accuracy['recall']:.3f}")
    for miss in accuracy["misses"]:
        print(f"  missed          frame {miss['frame']:>5} {miss['direction']:<3}  {miss['note']}")
    for false in accuracy["false_positives"]:
        print(f"  false positive  frame {false['frame']:>5} {false['direction']:<3}  track {false['track_id']}")
    print(f"  bar (each direction within 10%, precision and recall >= 0.9): "
          f"{'met' if accuracy['meets_bar'] else 'NOT met'}")
    return 0
