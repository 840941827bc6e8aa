"""Label-free agreement benchmark (``camcount bench agreement``): several models count the same random lines over
the same footage; each model after the first is scored against the first (``counting.agreement``).

Every model counts with the product defaults of ``counting.config`` and its own box calibration, detections down
to the tracker's ``low_threshold``, each footage analysed once per model with all its random lines together.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from camcount.accuracy import FOOTAGE_FETCH
from foundation.errors import UsageError
from foundation.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_LINES = 100


def run_agreement(
    settings: Settings,
    model_refs: Sequence[str],
    footages: Sequence[Path] | None = None,
    lines: int = DEFAULT_LINES,
    seed: int = 0,
    tolerance_frames: int = 5,
    batch_size: int = 8,
) -> dict[str, Any]:
    """Count ``lines`` random lines (``counting.agreement.random_lines``, one set per footage and ``seed``) on
    each footage with each model; return, per footage and candidate (every model after the first), its agreement
    with the first model as plain JSON. ``footages`` default to the labelled footages (``FOOTAGE_FETCH``) that are
    in ``<home>/data``."""
    from camcount.offline import analyze
    from counting.agreement import agreement, random_lines
    from counting.config import CameraConfig, TrackerConfig
    from models.loading import load_detector
    from producers.encoding import JPEG_QUALITY
    from producers.sources import FrameSource

    if len(model_refs) < 2:
        raise UsageError("agreement needs a reference and at least one candidate: pass --model twice or more")
    if lines < 1:
        raise UsageError(f"--lines must be at least 1, got {lines}")
    if tolerance_frames < 0:
        raise UsageError(f"--tolerance-frames must be at least 0, got {tolerance_frames}")
    if footages is None:
        data = settings.layout().data
        footages = [data / video for video in FOOTAGE_FETCH if (data / video).exists()]
        if not footages:
            raise UsageError(f"no footage in {data}: run {' or '.join(f'`{m}`' for m in FOOTAGE_FETCH.values())}, "
                             "or pass --footage PATH")
    missing = [str(p) for p in footages if not Path(p).exists()]
    if missing:
        raise UsageError(f"footage {missing} is missing: check the path")
    tracker = TrackerConfig()
    detectors = [load_detector(settings, ref, max_batch=batch_size) for ref in model_refs]
    names = [f"{d.name}@{d.version}" for d in detectors]
    reports = []
    for path in footages:
        first = next(FrameSource(str(path)).frames(), None)
        if first is None:
            raise UsageError(f"footage {path} has no frames")
        height, width = first.image.shape[:2]
        config = CameraConfig(camera_id="agreement", lines=random_lines((width, height), lines, seed), tracker=tracker)
        crossings, seconds = [], []
        for name, detector in zip(names, detectors):
            started = time.monotonic()
            result = analyze(FrameSource(str(path)), config, detector, batch_size=batch_size,
                             jpeg_quality=JPEG_QUALITY, conf=tracker.low_threshold)
            seconds.append(round(time.monotonic() - started, 1))
            crossings.append(result.crossings)
            logger.info("%s on %s: %d crossings of %d random lines", name, path, len(result.crossings), lines)
        by_name = {line.name: line for line in config.lines}
        candidates = []
        for name, events in zip(names[1:], crossings[1:]):
            scored = agreement(crossings[0], events, config.lines, tolerance_frames)
            candidates.append({
                "model": name,
                "crossings": len(events),
                "lines_crossed": len(scored.lines),
                "matched": scored.matched,
                "only_reference": scored.only_reference,
                "only_candidate": scored.only_candidate,
                "precision": round(scored.precision, 3),
                "recall": round(scored.recall, 3),
                "most_different": [
                    {"line": line.line, "start": list(by_name[line.line].start), "end": list(by_name[line.line].end),
                     "matched": line.matched, "only_reference": line.only_reference,
                     "only_candidate": line.only_candidate}
                    for line in scored.most_different()
                ],
            })
        reports.append({"footage": str(path), "frames": result.frames, "frame_size": [width, height],
                        "reference_crossings": len(crossings[0]), "seconds": dict(zip(names, seconds)),
                        "candidates": candidates})
    return {"reference": names[0], "lines": lines, "seed": seed, "tolerance_frames": tolerance_frames,
            "footages": reports}
