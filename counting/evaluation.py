"""Accuracy of line crossings against hand-labelled ground truth (pure: no model, no video).

Ground-truth file (JSON)::

    {"lines": {"L1": {"p1": [x, y], "p2": [x, y],
                      "crossings": [{"frame": 24, "direction": "right", "note": "..."}, ...],
                      "ambiguous_not_counted": [...]}}}

Labelled directions are image-space walking directions (``left``, ``right``, ``up``, ``down``; y points
down). They are mapped to the product's ``in``/``out`` with the product convention of
``counting.config.LineConfig``: a person walking in direction u ends up on the side sign(cross(p2 - p1, u)),
and +1 is ``in``. A direction parallel to the line cannot cross it and is rejected.

Matching: an emitted crossing matches a labelled one of the same line and direction whose frame is
within ``tolerance_frames``; the matching is one-to-one, with the most pairs possible and, among those,
the least total |frame difference| (optimal assignment).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from counting.lines import CrossingEvent, Direction
from foundation.errors import CamcountError

logger = logging.getLogger(__name__)

_WALK_DIRECTIONS: dict[str, tuple[float, float]] = {
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
}
_DIRECTIONS: tuple[Direction, Direction] = ("in", "out")


class GroundTruthError(CamcountError, ValueError):
    """A ground-truth file or line cannot be used; the message says what to fix."""

    code = "INF_001"
    detail = "invalid-ground-truth"


@dataclass(frozen=True)
class LabelledCrossing:
    """One hand-labelled crossing: first frame on the new side, product direction, annotator's note."""

    frame: int
    direction: Direction
    note: str = ""


@dataclass(frozen=True)
class LineTruth:
    """Ground truth of one line. Invariant: ``crossings`` is sorted by frame; ``start`` != ``end``."""

    name: str
    start: tuple[float, float]
    end: tuple[float, float]
    crossings: tuple[LabelledCrossing, ...]

    def count(self, direction: Direction) -> int:
        return sum(1 for c in self.crossings if c.direction == direction)


def product_direction(walk: str, start: Sequence[float], end: Sequence[float]) -> Direction:
    """``in`` or ``out`` for a person walking ``walk`` (left/right/up/down) across the line start -> end."""
    if walk not in _WALK_DIRECTIONS:
        raise GroundTruthError(f"unknown direction {walk!r}: use one of {sorted(_WALK_DIRECTIONS)}")
    (dx, dy), (ux, uy) = np.subtract(end, start), _WALK_DIRECTIONS[walk]
    side = np.sign(dx * uy - dy * ux)
    if side == 0:
        raise GroundTruthError(f"direction {walk!r} is parallel to the line {tuple(start)} -> {tuple(end)}")
    return "in" if side > 0 else "out"


def load_line_truth(path: str | Path, line: str | None = None) -> LineTruth:
    """Read one line of a ground-truth file; ``line`` may be omitted when the file has exactly one."""
    return parse_line_truth(load_truth(path), line, str(path))


def load_truth(path: str | Path) -> dict[str, Any]:
    """The parsed JSON document of a ground-truth file (GroundTruthError if it cannot be read)."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise GroundTruthError(f"{path}: cannot read ground truth: {exc}") from exc
    if not isinstance(document, dict):
        raise GroundTruthError(f"{path}: not a JSON object with 'video' and 'lines'")
    return document


def parse_all_lines(document: Any, source: str = "<ground truth>") -> list[LineTruth]:
    """Every line of an already-parsed ground-truth document, in file order."""
    lines = document.get("lines") if isinstance(document, dict) else None
    if not isinstance(lines, dict) or not lines:
        raise GroundTruthError(f"{source}: no 'lines' mapping")
    return [parse_line_truth(document, name, source) for name in lines]


def parse_line_truth(document: Any, line: str | None = None, source: str = "<ground truth>") -> LineTruth:
    """Validate an already-parsed ground-truth document and return the chosen line."""
    lines = document.get("lines") if isinstance(document, dict) else None
    if not isinstance(lines, dict) or not lines:
        raise GroundTruthError(f"{source}: no 'lines' mapping")
    if line is None:
        if len(lines) != 1:
            raise GroundTruthError(f"{source}: several lines {sorted(lines)}: name one")
        line = next(iter(lines))
    if line not in lines:
        raise GroundTruthError(f"{source}: no line {line!r}; lines: {sorted(lines)}")
    body = lines[line]
    try:
        start = (float(body["p1"][0]), float(body["p1"][1]))
        end = (float(body["p2"][0]), float(body["p2"][1]))
        if start == end:
            raise GroundTruthError(f"{source}: line {line!r} has p1 == p2")
        crossings = tuple(sorted(
            (LabelledCrossing(int(c["frame"]), product_direction(str(c["direction"]), start, end),
                              str(c.get("note", "")))
             for c in body["crossings"]),
            key=lambda c: c.frame,
        ))
    except (KeyError, TypeError, IndexError, ValueError) as exc:
        if isinstance(exc, GroundTruthError):
            raise
        raise GroundTruthError(f"{source}: line {line!r} is malformed ({exc!r}): needs p1, p2 and crossings") from exc
    return LineTruth(line, start, end, crossings)


@dataclass(frozen=True)
class DirectionAccuracy:
    """Counts of one direction; ``error_pct`` is (emitted - truth) / truth * 100, None when truth is 0."""

    truth: int
    emitted: int

    @property
    def error_pct(self) -> float | None:
        return None if self.truth == 0 else 100.0 * (self.emitted - self.truth) / self.truth


@dataclass(frozen=True)
class LineAccuracy:
    """Result of ``evaluate``. Invariants: ``matched`` pairs (labelled frame, emitted frame, direction) are
    one-to-one and within the tolerance; every labelled crossing is matched or in ``misses``; every emitted
    crossing is matched or in ``false_positives``. Precision (recall) is 1.0 when nothing was emitted (labelled)."""

    line: str
    tolerance_frames: int
    directions: dict[Direction, DirectionAccuracy]
    matched: tuple[tuple[int, int, Direction], ...]
    misses: tuple[LabelledCrossing, ...]
    false_positives: tuple[CrossingEvent, ...]

    @property
    def precision(self) -> float:
        emitted = len(self.matched) + len(self.false_positives)
        return 1.0 if emitted == 0 else len(self.matched) / emitted

    @property
    def recall(self) -> float:
        labelled = len(self.matched) + len(self.misses)
        return 1.0 if labelled == 0 else len(self.matched) / labelled

    def meets(self, max_error_pct: float = 10.0, min_precision: float = 0.9, min_recall: float = 0.9,
              small_truth: int = 10, small_slack: int = 1) -> bool:
        """Every direction's count within ``max_error_pct`` (within +-``small_slack`` where fewer than
        ``small_truth`` are labelled, as a per cent of a small count says little), and precision and recall at
        least the minimums."""
        within = all(
            abs(d.emitted - d.truth) <= small_slack if d.truth < small_truth
            else abs(d.error_pct or 0.0) <= max_error_pct
            for d in self.directions.values()
        )
        return within and self.precision >= min_precision and self.recall >= min_recall

    def as_json(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "tolerance_frames": self.tolerance_frames,
            "directions": {
                name: {"truth": d.truth, "emitted": d.emitted,
                       "error_pct": None if d.error_pct is None else round(d.error_pct, 1)}
                for name, d in self.directions.items()
            },
            "matched": len(self.matched),
            "precision": round(self.precision, 3),
            "recall": round(self.recall, 3),
            "misses": [{"frame": m.frame, "direction": m.direction, "note": m.note} for m in self.misses],
            "false_positives": [{"frame": f.frame_seq, "direction": f.direction, "track_id": f.track_id}
                                for f in self.false_positives],
            "meets_bar": self.meets(),
        }


def _match_frames(labelled: np.ndarray, emitted: np.ndarray, tolerance: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (into labelled, into emitted): most pairs within ``tolerance``, then least total |diff|."""
    if len(labelled) == 0 or len(emitted) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    diff = np.abs(labelled[:, None] - emitted[None, :]).astype(np.float64)
    # A gated pair costs more than every valid pair together, so no valid pair is ever given up for it.
    gated = float(diff.size * (tolerance + 1) + 1)
    rows, cols = linear_sum_assignment(np.where(diff <= tolerance, diff, gated))
    ok = diff[rows, cols] <= tolerance
    return rows[ok], cols[ok]


def evaluate(events: Sequence[CrossingEvent], truth: LineTruth, tolerance_frames: int = 5) -> LineAccuracy:
    """Compare the emitted crossings of ``truth.name`` (events of other lines are ignored) with the labels."""
    if tolerance_frames < 0:
        raise ValueError(f"tolerance_frames must be >= 0, got {tolerance_frames}")
    own = [e for e in events if e.line == truth.name]
    matched: list[tuple[int, int, Direction]] = []
    misses: list[LabelledCrossing] = []
    false_positives: list[CrossingEvent] = []
    directions: dict[Direction, DirectionAccuracy] = {}
    for direction in _DIRECTIONS:
        labelled = [c for c in truth.crossings if c.direction == direction]
        emitted = [e for e in own if e.direction == direction]
        directions[direction] = DirectionAccuracy(len(labelled), len(emitted))
        rows, cols = _match_frames(np.array([c.frame for c in labelled], np.int64),
                                   np.array([e.frame_seq for e in emitted], np.int64), tolerance_frames)
        matched += [(labelled[r].frame, emitted[c].frame_seq, direction) for r, c in zip(rows, cols)]
        missed = np.setdiff1d(np.arange(len(labelled)), rows)
        spurious = np.setdiff1d(np.arange(len(emitted)), cols)
        misses += [labelled[i] for i in missed]
        false_positives += [emitted[i] for i in spurious]
    logger.debug("line %s: %d matched, %d missed, %d false positives", truth.name, len(matched), len(misses),
                 len(false_positives))
    return LineAccuracy(
        line=truth.name,
        tolerance_frames=tolerance_frames,
        directions=directions,
        matched=tuple(sorted(matched)),
        misses=tuple(sorted(misses, key=lambda c: c.frame)),
        false_positives=tuple(sorted(false_positives, key=lambda e: e.frame_seq)),
    )


@dataclass(frozen=True)
class OccupancyTruth:
    """Hand count of one frame: ``persons`` people at least about half visible (see the file's conventions)."""

    frame: int
    persons: int


def parse_occupancy(document: Any, source: str = "<ground truth>") -> tuple[OccupancyTruth, ...]:
    """The ``occupancy`` list of a ground-truth document (empty when it has none), sorted by frame."""
    rows = document.get("occupancy", []) if isinstance(document, dict) else []
    try:
        return tuple(sorted((OccupancyTruth(int(r["frame"]), int(r["persons"])) for r in rows),
                            key=lambda r: r.frame))
    except (KeyError, TypeError, ValueError) as exc:
        raise GroundTruthError(f"{source}: occupancy is malformed ({exc!r}): each row needs frame and persons") from exc


def occupancy_error(counts: dict[int, int], truth: Sequence[OccupancyTruth]) -> dict[str, Any]:
    """Mean absolute and mean signed error of per-frame ``counts`` (frame -> count; absent = 0) against ``truth``."""
    if not truth:
        return {"frames": 0, "mae": None, "bias": None, "per_frame": []}
    rows = [(t.frame, t.persons, counts.get(t.frame, 0)) for t in truth]
    errors = np.array([c - p for _, p, c in rows], np.float64)
    return {"frames": len(rows), "mae": round(float(np.abs(errors).mean()), 3),
            "bias": round(float(errors.mean()), 3),
            "per_frame": [{"frame": f, "truth": p, "counted": c} for f, p, c in rows]}
