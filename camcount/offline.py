"""Offline mode: decode -> model -> tracker -> counters in one process, on a video file.

The same pure parts as streaming mode, fed the same input: by default each frame goes through the same JPEG
round trip the ingestor applies, so a video gives the same counts offline as through Kafka and Faust.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np

from counting.config import CameraConfig
from counting.engine import CameraCounter, FrameResult
from counting.lines import CrossingEvent
from models.detector import Detector
from producers.encoding import JPEG_QUALITY, jpeg_round_trip
from producers.sources import FrameSource, SourceFrame

log = logging.getLogger(__name__)

@dataclass
class ZoneFigures:
    max_occupancy: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    entries: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    exits: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    dwell_ms: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))

    def as_json(self) -> dict[str, Any]:
        return {
            "max_occupancy": dict(self.max_occupancy),
            "entries": dict(self.entries),
            "exits": dict(self.exits),
            "mean_dwell_s": {k: round(float(np.mean(v)) / 1000, 2) for k, v in self.dwell_ms.items() if v},
        }


@dataclass
class Analysis:
    frames: int = 0
    crossings: list[CrossingEvent] = field(default_factory=list)
    zones: dict[str, ZoneFigures] = field(default_factory=dict)

    def add(self, counted: FrameResult) -> None:
        """Add one counted frame's crossings, zone occupancy and zone entries and exits."""
        self.crossings += counted.crossings
        for name, occupancy in counted.zones.items():
            figures = self.zones[name]
            for class_name, n in occupancy.items():
                figures.max_occupancy[class_name] = max(figures.max_occupancy[class_name], n)
        for event in counted.zone_events:
            figures = self.zones[event.zone]
            if event.kind == "enter":
                figures.entries[event.class_name] += 1
            else:
                figures.exits[event.class_name] += 1
                if event.dwell_ms is not None:
                    figures.dwell_ms[event.class_name].append(event.dwell_ms)

    def line_totals(self) -> dict[str, dict[str, Any]]:
        lines: dict[str, dict[str, Any]] = {}
        for c in self.crossings:
            line = lines.setdefault(c.line, {"in": 0, "out": 0, "by_class": {}})
            line[c.direction] += 1
            by_class = line["by_class"].setdefault(c.class_name, {"in": 0, "out": 0})
            by_class[c.direction] += 1
        return lines

    def as_json(self, config: CameraConfig) -> dict[str, Any]:
        lines = {line.name: {"in": 0, "out": 0, "by_class": {}} for line in config.lines}
        lines.update(self.line_totals())
        return {"frames": self.frames, "lines": lines,
                "zones": {name: figures.as_json() for name, figures in self.zones.items()}}


def _per_class(class_ids: np.ndarray, class_names: list[str]) -> dict[str, int]:
    ids, counts = np.unique(class_ids, return_counts=True)
    return {class_names[i]: int(n) for i, n in zip(ids, counts)}


def _batches(frames: Iterator[SourceFrame], size: int) -> Iterator[list[SourceFrame]]:
    batch: list[SourceFrame] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def analyze(
    source: FrameSource,
    config: CameraConfig,
    detector: Detector,
    batch_size: int = 8,
    jpeg_quality: int | None = JPEG_QUALITY,
    per_frame: TextIO | None = None,
    events: TextIO | None = None,
    progress: Callable[[int, float], None] | None = None,
    conf: float | None = None,
    iou: float | None = None,
    calibrate: bool = True,
) -> Analysis:
    """Count a whole source. Frame i gets capture time i / fps (ms) on the source's own timeline.

    ``conf`` and ``iou`` override the model manifest's detection thresholds (``Detector.detect``). Lines and
    zones take their anchors from boxes corrected by the model's box calibration (``models.calibration``),
    as the streaming counting app does (``calibrate=False`` uses the boxes as they are, for comparison).

    ``per_frame`` gets one JSON line per frame: ``tracks`` (confirmed tracks seen in the frame, per class: the
    people in view), ``zones`` (zone -> class -> occupancy, as streamed) and ``detections`` (the model's raw boxes
    per class at the detection threshold, unconfirmed ones included).

    The source's end ends every track after its last frame (``CameraCounter.end``), as a streamed source's end
    marker does in the counting app: crossings still waiting for their line's ``min_stay_ms`` are counted, and
    the tracks still inside a zone exit."""
    class_names = list(detector.manifest.class_names)
    calibration = detector.manifest.box_calibration if calibrate else None
    counter = CameraCounter(config, class_names)
    result = Analysis(zones={zone.name: ZoneFigures() for zone in config.zones})
    started = time.monotonic()
    last_capture_ms = 0
    for batch in _batches(source.frames(), batch_size):
        images = [f.image if jpeg_quality is None else jpeg_round_trip(f.image, jpeg_quality) for f in batch]
        for frame, detections in zip(batch, detector.detect(images, conf=conf, iou=iou)):
            capture_ms = int(frame.offset_ms if frame.offset_ms is not None else frame.index * 100)
            height, width = frame.image.shape[:2]
            counted = counter.update(frame.index, capture_ms, detections, calibration, (width, height))
            assert counted is not None  # frames arrive in order
            last_capture_ms = capture_ms
            result.frames += 1
            result.add(counted)
            if per_frame is not None:
                per_frame.write(json.dumps({
                    "frame": frame.index,
                    "tracks": _per_class(counted.tracked.class_id[counted.tracked.tracker_id >= 0], class_names),
                    "zones": counted.zones,
                    "detections": _per_class(detections.class_id, class_names),
                }) + "\n")
            _write_events(events, counted.crossings)
        if progress is not None:
            progress(result.frames, time.monotonic() - started)
    if counter.last_seq is not None:
        ended = counter.end(counter.last_seq, last_capture_ms)
        assert ended is not None  # at the last frame seen
        result.add(ended)
        _write_events(events, ended.crossings)
    return result


def _write_events(events: TextIO | None, crossings: list[CrossingEvent]) -> None:
    if events is None:
        return
    for c in crossings:
        events.write(json.dumps({"frame": c.frame_seq, "line": c.line, "direction": c.direction,
                                 "track_id": c.track_id, "class": c.class_name}) + "\n")
