"""Accuracy benchmark (``camcount bench accuracy``): count labelled footage offline, compare with ground truth.

Any number of ground-truth files (default: every ``benchmarks/ground_truth/*.json``) and lines are scored at
once. Files are grouped by the footage they label (their ``video``), and each footage is analysed once, with all
its labelled lines counted together by the same settings: the ground truth's own lines (never a camera
config's), the product defaults of ``counting.config`` unless overridden, and the model's box calibration unless
``calibrate=False``. Detections are requested down to the tracker's ``low_threshold``, so ByteTrack's second
(low-confidence) stage sees the boxes it is designed for.

Figures per line: per-direction counts and error %, event-level precision and recall (``counting.evaluation``),
the misses and false positives with their frames. Per footage with hand counts (``occupancy``): the mean absolute
error of the confirmed tracks per frame (people in view) and of the raw person detections. Then a summary over
all lines (micro-averaged precision and recall; how many lines meet the bar). Several models scored with the
same settings compare side by side (``comparison_rows``).
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks import GROUND_TRUTH_DIR
from foundation.errors import UsageError
from foundation.settings import Settings

if TYPE_CHECKING:  # imported where used: the CLI starts without loading models and the counting core
    from counting.config import TrackerConfig
    from counting.evaluation import LineTruth, OccupancyTruth
    from models.detector import Detector

logger = logging.getLogger(__name__)

DEFAULT_TOLERANCE_FRAMES = 5

# Hand-checked crossings of line L1 in vtest.avi, shipped with the repository.
DEFAULT_TRUTH = GROUND_TRUTH_DIR / "vtest_L1.json"


def default_truth_files() -> list[Path]:
    """Every ground-truth file shipped with the repository, in name order."""
    return sorted(GROUND_TRUTH_DIR.glob("*.json"))


# The footages the shipped ground truth labels, and how to fetch each (for the message when one is missing).
FOOTAGE_FETCH = {"vtest.avi": "make footage", "sample.mp4": "make sample-footage"}


def run_accuracy(
    settings: Settings,
    truth_paths: Sequence[Path] | Path | None = None,
    footage: Path | None = None,
    model_ref: str | None = None,
    lines: Sequence[str] | str | None = None,
    tracker: dict[str, Any] | None = None,
    min_distance_px: float | None = None,
    min_stay_ms: int | None = None,
    conf: float | None = None,
    iou: float | None = None,
    tolerance_frames: int = DEFAULT_TOLERANCE_FRAMES,
    batch_size: int = 8,
    calibrate: bool = True,
    data_dir: Path | None = None,
) -> dict[str, Any]:
    """Score ``lines`` (default: all) of ``truth_paths`` (default: every shipped file) and return the report as
    plain JSON.

    Each file's footage is its ``video`` under ``data_dir`` (default ``<home>/data``); ``footage`` replaces it
    when all the files label one video. A missing footage is an error for files given by name; with the shipped
    files (the default) it is skipped and listed under ``skipped`` with how to fetch it. ``tracker`` holds
    TrackerConfig field overrides, ``min_distance_px`` and ``min_stay_ms`` override every line's hysteresis and
    minimum stay; ``conf`` defaults to the tracker's ``low_threshold``, ``iou`` to the model manifest's NMS
    threshold.
    """
    from counting.config import TrackerConfig
    from counting.evaluation import GroundTruthError, load_truth, parse_all_lines, parse_occupancy
    from models.loading import load_detector

    skip_missing = truth_paths is None  # the shipped files: score the footages that are there, list the rest
    if truth_paths is None:
        truth_paths = default_truth_files()
    elif isinstance(truth_paths, (str, Path)):
        truth_paths = [Path(truth_paths)]
    wanted = None if lines is None else ({lines} if isinstance(lines, str) else set(lines))
    # video -> [(truth path, document, its lines)], in the order given
    videos: dict[str, list[tuple[Path, dict[str, Any], list[Any]]]] = {}
    for path in truth_paths:
        document = load_truth(path)
        video = document.get("video")
        if not isinstance(video, str) or not video:
            raise GroundTruthError(f"{path}: no 'video' (the footage file name it labels)")
        chosen = [t for t in parse_all_lines(document, str(path)) if wanted is None or t.name in wanted]
        videos.setdefault(video, []).append((Path(path), document, chosen))
    found = {t.name for files in videos.values() for _, _, chosen in files for t in chosen}
    if wanted is not None and wanted - found:
        raise GroundTruthError(f"no line {sorted(wanted - found)} in {[str(p) for p in truth_paths]}")
    if footage is not None and len(videos) > 1:
        raise UsageError(f"--footage replaces one video, but the truth files label {sorted(videos)}: "
                         "pass the truth files of one video")

    tracker_config = TrackerConfig(**(tracker or {}))
    line_overrides = {name: value for name, value in (("min_distance_px", min_distance_px),
                                                      ("min_stay_ms", min_stay_ms)) if value is not None}
    detection_conf = tracker_config.low_threshold if conf is None else conf
    reference = model_ref or settings.model.reference
    detector = load_detector(settings, reference, max_batch=batch_size)
    data = data_dir or settings.layout().data
    footages, skipped = [], []
    for video, files in videos.items():
        path = footage or data / video
        if not path.exists():
            hint = FOOTAGE_FETCH.get(video, f"put {video} there or pass --footage")
            if skip_missing:
                logger.warning("skipping %s: footage %s is missing (run `%s`)", video, path, hint)
                skipped.append({"video": video, "footage": str(path), "fetch": hint})
                continue
            raise UsageError(f"footage {path} is missing: run `{hint}` (or pass --data-dir / --footage)")
        footages.append(_score_footage(video, path, files, detector, tracker_config, detection_conf, iou,
                                       line_overrides, tolerance_frames, batch_size, calibrate, parse_occupancy))
    line_reports = [line for f in footages for line in f["lines"]]
    matched = sum(line["matched"] for line in line_reports)
    emitted = sum(line["matched"] + len(line["false_positives"]) for line in line_reports)
    labelled = sum(line["matched"] + len(line["misses"]) for line in line_reports)
    calibration = detector.manifest.box_calibration
    return {
        "model": f"{detector.name}@{detector.version}",
        "input_size": [detector.manifest.input_width, detector.manifest.input_height],
        "box_calibration": None if not calibrate or calibration is None else calibration.model_dump(mode="json"),
        "detection": {"conf": detection_conf, "iou": detector.manifest.nms_threshold if iou is None else iou},
        "tracker": tracker_config.model_dump(),
        "tolerance_frames": tolerance_frames,
        "footages": footages,
        "skipped": skipped,
        "summary": {
            "lines": len(line_reports),
            "lines_meeting_bar": sum(1 for line in line_reports if line["meets_bar"]),
            "precision": round(matched / emitted, 3) if emitted else 1.0,
            "recall": round(matched / labelled, 3) if labelled else 1.0,
            "seconds": round(sum(f["seconds"] for f in footages), 1),
        },
    }


def _score_footage(video: str, path: Path, files: list[tuple[Path, dict[str, Any], list[LineTruth]]],
                   detector: Detector, tracker_config: TrackerConfig, detection_conf: float, iou: float | None,
                   line_overrides: dict[str, Any], tolerance_frames: int, batch_size: int, calibrate: bool,
                   parse_occupancy: Callable[[Any, str], tuple[OccupancyTruth, ...]]) -> dict[str, Any]:
    from camcount.offline import analyze
    from counting.config import CameraConfig, LineConfig
    from counting.evaluation import GroundTruthError, evaluate, occupancy_error
    from producers.encoding import JPEG_QUALITY
    from producers.sources import FrameSource

    truths = [(truth_path, t) for truth_path, _, chosen in files for t in chosen]
    names = [t.name for _, t in truths]
    if len(set(names)) != len(names):
        raise GroundTruthError(f"{video}: line names repeat across its truth files ({names}): rename one")
    line_configs = [LineConfig(name=t.name, start=t.start, end=t.end, **line_overrides) for _, t in truths]
    config = CameraConfig(camera_id="accuracy", lines=line_configs, tracker=tracker_config)
    occupancy = [row for truth_path, document, _ in files for row in parse_occupancy(document, str(truth_path))]
    per_frame = io.StringIO() if occupancy else None
    started = time.monotonic()
    result = analyze(FrameSource(str(path)), config, detector, batch_size=batch_size, jpeg_quality=JPEG_QUALITY,
                     conf=detection_conf, iou=iou, calibrate=calibrate, per_frame=per_frame)
    seconds = time.monotonic() - started
    lines = []
    for (truth_path, truth), line_config in zip(truths, line_configs):
        accuracy = evaluate(result.crossings, truth, tolerance_frames)
        logger.info("%s line %s: precision %.3f recall %.3f", video, truth.name, accuracy.precision, accuracy.recall)
        lines.append({"truth": str(truth_path), **accuracy.as_json(),
                      "start": list(line_config.start), "end": list(line_config.end),
                      "min_distance_px": line_config.min_distance_px, "min_stay_ms": line_config.min_stay_ms,
                      "min_anchor_confidence": line_config.min_anchor_confidence})
    report: dict[str, Any] = {"video": video, "footage": str(path), "frames": result.frames,
                              "seconds": round(seconds, 1), "fps": round(result.frames / max(seconds, 1e-9), 1),
                              "lines": lines}
    if per_frame is not None:
        rows = [json.loads(line) for line in per_frame.getvalue().splitlines()]
        tracks = {r["frame"]: r["tracks"].get("person", 0) for r in rows}
        raw = {r["frame"]: r["detections"].get("person", 0) for r in rows}
        report["occupancy"] = {"tracks": occupancy_error(tracks, occupancy),
                               "detections": occupancy_error(raw, occupancy)}
    return report


def comparison_rows(reports: Sequence[dict[str, Any]]) -> list[list[str]]:
    """Reports of several models (``run_accuracy``, same truth and settings) side by side: a header row of model
    references, then one row per labelled line (counted in / out, precision, recall, bar), per footage with hand
    counts (people in view MAE) and the summary. A line or footage one report lacks shows ``-`` there."""
    def line_cell(line: dict[str, Any] | None) -> str:
        if line is None:
            return "-"
        counted = f"{line['directions']['in']['emitted']}/{line['directions']['out']['emitted']}"
        return (f"{counted} P {line['precision']:.3f} R {line['recall']:.3f} "
                f"{'met' if line['meets_bar'] else 'NOT met'}")

    by_model = [{(f["video"], line["line"]): line for f in r["footages"] for line in f["lines"]} for r in reports]
    occupancy = [{f["video"]: f["occupancy"]["tracks"]["mae"] for f in r["footages"] if f.get("occupancy")}
                 for r in reports]
    keys = list(dict.fromkeys(key for lines in by_model for key in lines))
    videos = list(dict.fromkeys(video for maes in occupancy for video in maes))
    rows = [["", *(r["model"] for r in reports)]]
    for video, name in keys:
        truth = next(lines[(video, name)]["directions"] for lines in by_model if (video, name) in lines)
        label = f"{name} ({video}, labelled {truth['in']['truth']}/{truth['out']['truth']})"
        rows.append([label, *(line_cell(lines.get((video, name))) for lines in by_model)])
    for video in videos:
        rows.append([f"people in view MAE ({video})", *(str(maes.get(video, "-")) for maes in occupancy)])
    rows.append(["lines meeting the bar",
                 *(f"{r['summary']['lines_meeting_bar']} of {r['summary']['lines']}" for r in reports)])
    rows.append(["precision / recall, all lines",
                 *(f"{r['summary']['precision']:.3f} / {r['summary']['recall']:.3f}" for r in reports)])
    rows.append(["seconds", *(str(r["summary"]["seconds"]) for r in reports)])
    return rows

