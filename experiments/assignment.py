"""Deterministic assignment of cameras (or camera time slots) to variants, and shadow sampling.

Invariants:

- ``assign`` is a pure function of (salt, variants and weights, camera_id[, slot]): every process, on every
  restart, puts a camera in the same variant, with no shared state to coordinate;
- the share of cameras in a variant converges to ``weight / sum(weights)`` (sha256 is uniform enough);
- changing the salt re-draws every camera independently of the previous draw.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools

from experiments.config import Experiment, Variant
from foundation.errors import CamcountError

_HASH_BYTES = 8
_HASH_SPAN = float(1 << (8 * _HASH_BYTES))


class AssignmentError(CamcountError, ValueError):
    """A frame cannot be assigned; the message says which input is missing."""

    code = "EXP_002"
    detail = "assignment-failed"


def unit_hash(*parts: str) -> float:
    """Map ``parts`` joined by ``|`` to a uniform number in [0, 1) via the first 8 bytes of their sha256."""
    digest = hashlib.sha256("|".join(parts).encode()).digest()
    return int.from_bytes(digest[:_HASH_BYTES], "big") / _HASH_SPAN


def time_slot(experiment: Experiment, ts_ms: int) -> int:
    """The index of the ``slot_minutes``-long slot (counted from the Unix epoch) that ``ts_ms`` falls in."""
    return ts_ms // (experiment.slot_minutes * 60_000)


def assign(experiment: Experiment, camera_id: str, ts_ms: int | None = None) -> Variant:
    """The variant serving ``camera_id`` (at capture time ``ts_ms`` in time_slot mode).

    camera mode hashes ``salt|camera_id``; time_slot mode hashes ``salt|camera_id|slot``, so a camera changes
    variant only at slot boundaries. ``ts_ms`` is ignored in camera mode and required in time_slot mode.
    """
    parts = [experiment.salt, camera_id]
    if experiment.assignment == "time_slot":
        if ts_ms is None:
            raise AssignmentError(
                f"experiment {experiment.name!r} assigns per time slot: pass the frame's capture ts_ms"
            )
        parts.append(str(time_slot(experiment, ts_ms)))
    weights = [variant.weight for variant in experiment.variants]
    bounds = list(itertools.accumulate(weights))
    point = unit_hash(*parts) * bounds[-1]
    # bisect_right: a point equal to a bound belongs to the next variant, so each interval is [low, high).
    index = min(bisect.bisect_right(bounds, point), len(bounds) - 1)
    return experiment.variants[index]


def should_shadow(experiment: Experiment, camera_id: str, frame_seq: int) -> bool:
    """Whether frame ``frame_seq`` of ``camera_id`` is also run through the shadow candidate.

    Deterministic (``salt|shadow|camera_id|frame_seq`` hashed against ``shadow.sample_rate``), so a replayed
    frame is shadowed again or not at all. Always False when shadowing is disabled. Frames the candidate
    already serves need no shadow run; skipping them is the caller's business.
    """
    shadow = experiment.shadow
    if not shadow.enabled:
        return False
    return unit_hash(experiment.salt, "shadow", camera_id, str(frame_seq)) < shadow.sample_rate
