"""Per-camera counting: tracker, line counters and zone counters driven by frame sequence numbers.

Frame handling, keyed by ``frame_seq`` (monotonic per camera):

* ``update`` with a seq above the last seen one tracks the frame; the tracker predicts across the
  distance from the last *tracked* frame, so missing and skipped frames are both bridged by prediction
  (a track survives ``max_gap_frames`` frames without a match, whichever the cause).
* ``update`` or ``skip`` with a seq at or below the last seen one (duplicate, late or replayed frame)
  changes nothing; ``update`` returns None and the frame is counted in ``late_frames``.
* ``skip`` records a frame the inference stage did not run: it is seen (a later copy is late) but
  not tracked, and tracks are not treated as missed on it.
* ``end`` ends every track after the source's last frame; so does a frame captured more than the tracker's
  ``max_stall_ms`` after the last tracked one, before it is tracked: whatever happened in the meantime, a box
  then is not the same person's as before, however few frame seqs lie between.

A line first meets a track where the track was first detected (``Tracker.first_boxes``), not where it
got its id ``min_hits`` frames later, so crossing the line during those frames is counted too.

A line sees a tracked box only if its confidence is at least the line's ``min_anchor_confidence``; a track
matched to a weaker box is, for that line, not seen on that frame (it keeps its side, and the next confident
box continues its path). The tracker's second stage matches low-confidence boxes to keep identities through
occlusion, and those boxes are mostly partial (the feet or half the body hidden), so their bottom-centre jumps:
it must not decide which side of a line a person is on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from counting.config import Anchor, CameraConfig, CameraConfigError
from counting.lines import CrossingEvent, LineCounter
from counting.tracker import Tracker
from counting.zones import ZoneCounter, ZoneEvent
from foundation.errors import CamcountError
from models.calibration import BoxCalibration
from models.detections import Detections

logger = logging.getLogger(__name__)

_STATE_VERSION = 1


class CameraStateError(CamcountError, ValueError):
    """A camera snapshot cannot be restored; start the camera from an empty state instead."""

    code = "COUNT_001"
    detail = "snapshot-unreadable"


@dataclass(frozen=True)
class FrameResult:
    """Counting result of one frame.

    ``tracked`` holds the detections of the camera's classes with ``tracker_id`` (-1: not a confirmed
    track); ``crossings`` the crossings confirmed on this frame (their own ``frame_seq`` may be earlier,
    see ``counting.lines``); ``zones`` maps zone name -> class name -> tracked anchors inside now;
    ``zone_events`` the entries and exits of this frame, including exits of tracks dropped this frame (and
    ``crossings`` likewise the pending crossings of tracks dropped this frame).
    """

    frame_seq: int
    capture_ts_ms: int
    tracked: Detections
    crossings: list[CrossingEvent]
    zones: dict[str, dict[str, int]]
    zone_events: list[ZoneEvent]


class CameraCounter:
    """Everything one camera counts. Invariant: ``last_seq`` >= ``_last_tracked_seq`` when both are set, and
    ``_last_tracked_ts`` is the capture time of frame ``_last_tracked_seq``."""

    def __init__(self, config: CameraConfig, class_names: Sequence[str]) -> None:
        self.config = config
        self.class_names = list(class_names)
        self._class_ids = self._ids_of(config.classes, "classes")
        self.tracker = Tracker(config.tracker)
        self._line_filter = {
            line.name: (line.anchor or config.anchor, self._mask_of(config.line_classes(line), f"lines.{line.name}"))
            for line in config.lines
        }
        self._zone_filter = {
            zone.name: (zone.anchor or config.anchor, self._mask_of(config.zone_classes(zone), f"zones.{zone.name}"))
            for zone in config.zones
        }
        self.lines = {line.name: LineCounter(line, self.class_names) for line in config.lines}
        self.zones = {
            zone.name: ZoneCounter(zone, self.class_names, np.flatnonzero(self._zone_filter[zone.name][1]).tolist())
            for zone in config.zones
        }
        self.last_seq: int | None = None
        self._last_tracked_seq: int | None = None
        self._last_tracked_ts: int | None = None
        self.late_frames = 0

    def _ids_of(self, names: Sequence[str], field: str) -> np.ndarray:
        missing = [name for name in names if name not in self.class_names]
        if missing:
            raise CameraConfigError(
                f"camera {self.config.camera_id}: {field}: classes {missing} are not classes of the model "
                f"{self.class_names}: fix the camera config or use a model that detects them"
            )
        return np.asarray(sorted(self.class_names.index(name) for name in names), np.int64)

    def _mask_of(self, names: Sequence[str], field: str) -> np.ndarray:
        """Boolean lookup by class id; cheaper per frame than ``np.isin`` for ids known to be in range."""
        mask = np.zeros(len(self.class_names), bool)
        mask[self._ids_of(names, field)] = True
        return mask

    def _is_late(self, frame_seq: int) -> bool:
        return self.last_seq is not None and frame_seq <= self.last_seq

    def skip(self, frame_seq: int) -> None:
        """Mark a frame the inference stage skipped; a late or duplicate marker is ignored."""
        if self._is_late(frame_seq):
            logger.debug("camera %s: ignoring late skip marker %d", self.config.camera_id, frame_seq)
            return
        self.last_seq = frame_seq

    def update(self, frame_seq: int, capture_ts_ms: int, detections: Detections,
               calibration: BoxCalibration | None = None,
               frame_size: tuple[int, int] | None = None) -> FrameResult | None:
        """Count one frame; None (and ``late_frames`` + 1) when ``frame_seq`` is not after the last seen.

        ``calibration`` (the model's, ``models.calibration``) with the frame's (width, height) ``frame_size``
        corrects the boxes that lines and zones take their anchors from; tracking uses the model's boxes."""
        if calibration is not None and frame_size is None:
            raise ValueError("a box calibration needs the frame size")
        if self._is_late(frame_seq):
            self.late_frames += 1
            logger.debug("camera %s: ignoring late frame %d (last %s)", self.config.camera_id, frame_seq, self.last_seq)
            return None
        crossings: list[CrossingEvent] = []
        zone_events: list[ZoneEvent] = []
        if self._stalled(frame_seq, capture_ts_ms):
            crossings, zone_events = self._end_every_track()
        frame_gap = 1 if self._last_tracked_seq is None else frame_seq - self._last_tracked_seq
        self.last_seq = self._last_tracked_seq = frame_seq
        self._last_tracked_ts = capture_ts_ms

        tracked = self.tracker.update(detections[np.isin(detections.class_id, self._class_ids)], frame_gap)
        alive = self.tracker.alive_ids()
        has_id = tracked.tracker_id >= 0
        anchors: dict[Anchor, np.ndarray] = {}

        def fitted(boxes: Detections) -> Detections:
            if calibration is None or len(boxes) == 0:
                return boxes
            assert frame_size is not None
            return Detections(calibration.apply(boxes.xyxy, frame_size), boxes.confidence, boxes.class_id,
                              boxes.tracker_id)

        anchored = fitted(tracked)

        def select(anchor: Anchor, class_mask: np.ndarray,
                   min_confidence: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            if anchor not in anchors:
                anchors[anchor] = anchored.anchors(anchor)
            # tracked only holds camera classes, all valid indices into class_mask
            rows = has_id & class_mask[tracked.class_id] & (tracked.confidence >= min_confidence)
            return tracked.tracker_id[rows], anchors[anchor][rows], tracked.class_id[rows]

        first = tracked[has_id]
        first = fitted(Detections(self.tracker.first_boxes(first.tracker_id), first.confidence, first.class_id,
                                  first.tracker_id))
        first_anchors: dict[Anchor, np.ndarray] = {}
        for name, counter in self.lines.items():
            anchor, class_mask = self._line_filter[name]
            if anchor not in first_anchors:
                first_anchors[anchor] = first.anchors(anchor)
            line_rows = class_mask[first.class_id]
            counter.introduce(first.tracker_id[line_rows], first_anchors[anchor][line_rows])
            crossings += counter.update(frame_seq, capture_ts_ms,
                                        *select(anchor, class_mask, counter.line.min_anchor_confidence))
            crossings += counter.retain(alive)
        occupancy: dict[str, dict[str, int]] = {}
        for name, zone_counter in self.zones.items():
            zone_frame = zone_counter.update(frame_seq, capture_ts_ms, *select(*self._zone_filter[name]))
            occupancy[name] = zone_frame.occupancy
            zone_events += zone_frame.events
            zone_events += zone_counter.retain(alive)
        return FrameResult(frame_seq, capture_ts_ms, tracked, crossings, occupancy, zone_events)

    def end(self, frame_seq: int, capture_ts_ms: int) -> FrameResult | None:
        """The source ended after frame ``frame_seq`` (its last), so every track ends there, as when the tracker
        drops one: lines report the crossings still waiting for ``min_stay_ms``, zones the exits of the tracks
        inside (occupancy 0), and the tracker starts over (ids keep increasing, so no crossing id repeats).

        Returns None (``late_frames`` + 1) when ``frame_seq`` is below the last seen frame: a replayed end marker,
        after which the camera went on. A repeated end at the same frame ends nothing more (an empty result)."""
        if self.last_seq is not None and frame_seq < self.last_seq:
            self.late_frames += 1
            logger.debug("camera %s: ignoring late end marker %d (last %s)", self.config.camera_id, frame_seq,
                         self.last_seq)
            return None
        self.last_seq = frame_seq
        crossings, zone_events = self._end_every_track()
        none, nowhere = np.zeros(0, np.int64), np.zeros((0, 2))
        occupancy = {name: zone_counter.update(frame_seq, capture_ts_ms, none, nowhere, none).occupancy
                     for name, zone_counter in self.zones.items()}
        return FrameResult(frame_seq, capture_ts_ms, Detections.empty(), crossings, occupancy, zone_events)

    def _stalled(self, frame_seq: int, capture_ts_ms: int) -> bool:
        """Whether the frame comes more than ``max_stall_ms`` of capture time after the last tracked one (logged)."""
        stall_ms = self.config.tracker.max_stall_ms
        if not stall_ms or self._last_tracked_ts is None or capture_ts_ms - self._last_tracked_ts <= stall_ms:
            return False
        logger.info("camera %s: frame %d was captured %d ms after the last tracked frame; every track ends first",
                    self.config.camera_id, frame_seq, capture_ts_ms - self._last_tracked_ts)
        return True

    def _end_every_track(self) -> tuple[list[CrossingEvent], list[ZoneEvent]]:
        """Drop every track: the crossings still waiting and the zone exits of the tracks that were inside."""
        self.tracker.end_tracks()
        none = np.zeros(0, np.int64)
        return ([c for counter in self.lines.values() for c in counter.retain(none)],
                [e for zone_counter in self.zones.values() for e in zone_counter.retain(none)])

    def to_state(self) -> dict[str, Any]:
        """Plain-JSON snapshot of the whole camera; ``from_state`` continues from it identically."""
        return {
            "version": _STATE_VERSION,
            "camera_id": self.config.camera_id,
            "class_names": self.class_names,
            "last_seq": self.last_seq,
            "last_tracked_seq": self._last_tracked_seq,
            "last_tracked_ts": self._last_tracked_ts,
            "late_frames": self.late_frames,
            "tracker": self.tracker.to_state(),
            "lines": {name: counter.to_state() for name, counter in self.lines.items()},
            "zones": {name: counter.to_state() for name, counter in self.zones.items()},
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], config: CameraConfig, class_names: Sequence[str]) -> "CameraCounter":
        """Restore a snapshot. Lines and zones are matched by name: one added to the config since the
        snapshot starts empty, one removed is dropped (both logged).

        Classes are matched by name too: the snapshot's class ids are renumbered from the class list it was
        taken with to ``class_names`` (a model version may list its classes in another order), so a track
        keeps its class across a model swap. A snapshot without its class list (written before lists were
        saved) is taken to use ``class_names``. A tracked class missing from ``class_names`` raises a state
        error (TrackerStateError, LineStateError or ZoneStateError)."""
        if state.get("version") != _STATE_VERSION:
            raise CameraStateError(
                f"camera state version {state.get('version')!r} is not {_STATE_VERSION}: discard the snapshot"
            )
        if state.get("camera_id") != config.camera_id:
            raise CameraStateError(
                f"state is for camera {state.get('camera_id')!r}, not {config.camera_id!r}: use that camera's snapshot"
            )
        missing = sorted({"tracker", "last_seq", "last_tracked_seq", "late_frames", "lines", "zones"} - set(state))
        if missing:
            raise CameraStateError(f"camera state lacks {missing}: discard the snapshot")
        counter = cls(config, class_names)
        saved_names = list(state.get("class_names", counter.class_names))
        new_ids = np.asarray([counter.class_names.index(n) if n in counter.class_names else -1 for n in saved_names],
                             np.int64)
        counter.tracker = Tracker.from_state(state["tracker"], config.tracker)
        counter.tracker.renumber_classes(new_ids)
        counter.last_seq = state["last_seq"]
        counter._last_tracked_seq = state["last_tracked_seq"]
        counter._last_tracked_ts = state.get("last_tracked_ts")  # None in snapshots from before max_stall_ms
        counter.late_frames = int(state["late_frames"])
        for kind, saved, current in (("line", state["lines"], counter.lines), ("zone", state["zones"], counter.zones)):
            for name in sorted(set(saved) - set(current)):
                logger.warning(
                    "camera %s: %s %r is no longer configured; dropping its state", config.camera_id, kind, name
                )
            for name in sorted(set(current) - set(saved)):
                logger.warning("camera %s: %s %r has no saved state; starting it empty", config.camera_id, kind, name)
        for name in set(counter.lines) & set(state["lines"]):
            counter.lines[name] = LineCounter.from_state(state["lines"][name], counter.lines[name].line, class_names)
            counter.lines[name].renumber_classes(new_ids)
        for name in set(counter.zones) & set(state["zones"]):
            zone = counter.zones[name].zone
            counter.zones[name] = ZoneCounter.from_state(
                state["zones"][name], zone, class_names, np.flatnonzero(counter._zone_filter[name][1]).tolist()
            )
            counter.zones[name].renumber_classes(new_ids)
        return counter
