"""Label-free agreement of two models' line crossings on the same footage (pure: no model, no video).

Hand-labelled lines say how accurate a model is on those lines only. To see how a model's counting carries to
lines nobody labelled, both models count many random lines over the same footage and the candidate's crossings
are scored against the reference's with the matching of ``counting.evaluation`` (same line, same direction,
within ``tolerance_frames``, one-to-one): the reference stands in for the truth. Agreement is not accuracy; two
models that err alike agree. It tells where and how often a candidate counts differently from a model trusted
elsewhere, with no labels at all.

Invariant: the lines are a pure function of (frame size, count, seed), so two runs with the same arguments
count the same lines and their figures compare.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from counting.config import LineConfig
from counting.evaluation import LabelledCrossing, LineTruth, evaluate
from counting.lines import CrossingEvent

# Segment lengths, as shares of the frame's diagonal: from a doorway to a path's width.
LENGTH_RANGE = (0.1, 0.35)
# Segment centres stay this share of the width/height away from the frame's edges.
EDGE_MARGIN = 0.05


def random_lines(frame_size: tuple[int, int], count: int, seed: int = 0) -> list[LineConfig]:
    """``count`` segments ``R000``, ``R001``, ... with uniform centres inside the frame (``EDGE_MARGIN`` from
    its edges), uniform orientations and lengths uniform in ``LENGTH_RANGE`` of the diagonal; end points may
    lie outside the frame, as a line drawn to the frame's edge does. Deterministic in ``seed``."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    width, height = frame_size
    rng = np.random.default_rng(seed)
    low = np.array([EDGE_MARGIN * width, EDGE_MARGIN * height])
    high = np.array([(1 - EDGE_MARGIN) * width, (1 - EDGE_MARGIN) * height])
    centres = rng.uniform(low, high, size=(count, 2))
    angles = rng.uniform(0.0, np.pi, size=count)
    halves = rng.uniform(*LENGTH_RANGE, size=count) * float(np.hypot(width, height)) / 2
    offsets = np.stack([np.cos(angles), np.sin(angles)], axis=1) * halves[:, None]
    digits = max(3, len(str(count - 1)))
    return [LineConfig(name=f"R{i:0{digits}d}", start=tuple(np.round(c - o, 1)), end=tuple(np.round(c + o, 1)))
            for i, (c, o) in enumerate(zip(centres, offsets))]


@dataclass(frozen=True)
class LineAgreement:
    """One line: crossings both models counted (matched), and those only one of them counted."""

    line: str
    matched: int
    only_reference: int
    only_candidate: int


@dataclass(frozen=True)
class Agreement:
    """The candidate against the reference over every line either model saw crossed."""

    lines: tuple[LineAgreement, ...]
    lines_counted: int  # lines given, crossed or not

    @property
    def matched(self) -> int:
        return sum(line.matched for line in self.lines)

    @property
    def only_reference(self) -> int:
        return sum(line.only_reference for line in self.lines)

    @property
    def only_candidate(self) -> int:
        return sum(line.only_candidate for line in self.lines)

    @property
    def precision(self) -> float:
        """Share of the candidate's crossings the reference counted too (1.0 when it counted none)."""
        emitted = self.matched + self.only_candidate
        return self.matched / emitted if emitted else 1.0

    @property
    def recall(self) -> float:
        """Share of the reference's crossings the candidate counted too (1.0 when there were none)."""
        reference = self.matched + self.only_reference
        return self.matched / reference if reference else 1.0

    def most_different(self, count: int = 5) -> list[LineAgreement]:
        """The lines with the most crossings only one model counted, most first (name order among equals)."""
        differing = [line for line in self.lines if line.only_reference + line.only_candidate]
        return sorted(differing, key=lambda line: (-(line.only_reference + line.only_candidate), line.line))[:count]


def agreement(reference: Sequence[CrossingEvent], candidate: Sequence[CrossingEvent], lines: Sequence[LineConfig],
              tolerance_frames: int = 5) -> Agreement:
    """Score ``candidate``'s crossings of ``lines`` against ``reference``'s, line by line; lines neither model
    saw crossed are left out of ``Agreement.lines``."""
    per_line = []
    for line in lines:
        theirs = sorted((e for e in reference if e.line == line.name), key=lambda e: e.frame_seq)
        ours = [e for e in candidate if e.line == line.name]
        if not theirs and not ours:
            continue
        truth = LineTruth(line.name, line.start, line.end,
                          tuple(LabelledCrossing(e.frame_seq, e.direction) for e in theirs))
        scored = evaluate(ours, truth, tolerance_frames)
        per_line.append(LineAgreement(line.name, len(scored.matched), len(scored.misses),
                                      len(scored.false_positives)))
    return Agreement(tuple(per_line), len(lines))
