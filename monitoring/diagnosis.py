"""What a drift points at: one camera, or the model version.

Within one window, the cameras served by one model version are looked at together:

- **model**: at least ``min_cameras`` cameras on the version were judged and at least ``model_share`` of them
  (default: all) drifted. Many cameras changing together at once is the model (a new version, a changed threshold)
  or something every camera shares, not one lens.
- **camera**: the version's other judged cameras did not drift (at least one judged camera stayed quiet).
- **undetermined**: the version serves too few judged cameras to tell (fewer than ``min_cameras``).

A camera whose frames lost their boxes (``no-detections``: at least ``empty_share`` of its frames are empty, against
less than half in the reference: a blocked or blacked-out lens, a dead stream) is always a camera problem.

The cause names the direction of the change of the first drifted signal (in the order of
``monitoring.drift.SIGNALS``): ``no-detections``, ``fewer-detections``, ``more-detections``, ``lower-confidence``,
``higher-confidence``, ``smaller-boxes``, ``larger-boxes`` (the geometric mean box area), ``class-mix`` (the share of
each class changed; no direction), or ``drift`` when the means did not move: the shape changed.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Literal

from monitoring.drift import Comparison

Problem = Literal["camera", "model", "undetermined"]
CAUSES = {"detections": ("fewer-detections", "more-detections"),
          "confidence": ("lower-confidence", "higher-confidence"), "box_area": ("smaller-boxes", "larger-boxes")}
"""Per numeric signal: the cause when its mean went down, and when it went up."""


@dataclass(frozen=True)
class Key:
    camera: str
    model: str
    version: str

    @property
    def model_ref(self) -> str:
        return f"{self.model}@{self.version}"


@dataclass(frozen=True)
class Diagnosis:
    problem: Problem
    cause: str
    cameras: tuple[str, ...]
    """The drifted cameras the diagnosis rests on: this camera, or every drifted camera of the version."""
    judged_cameras: int
    """Judged cameras on the version in this window."""


def cause_of(comparison: Comparison, empty_share: float = 0.9) -> str:
    """The direction of a drifted comparison's change (see the module docstring)."""
    reference_empty, current_empty = comparison.empty_shares
    if current_empty >= empty_share and not reference_empty >= 0.5:
        return "no-detections"
    for signal in comparison.drifted_signals:
        before, after = comparison.means.get(signal, (math.nan, math.nan))
        if math.isnan(before) or math.isnan(after):
            continue
        if signal == "class_mix":
            return "class-mix"
        if before == after:
            continue
        lower, higher = CAUSES[signal]
        return lower if after < before else higher
    return "drift"


def diagnose(comparisons: dict[Key, Comparison], min_cameras: int = 2, model_share: float = 1.0,
             empty_share: float = 0.9) -> dict[Key, Diagnosis]:
    """A diagnosis for every drifted key of one window (``comparisons``: every key of that window)."""
    by_version: dict[tuple[str, str], list[Key]] = defaultdict(list)
    for key, comparison in comparisons.items():
        if comparison.judged:
            by_version[(key.model, key.version)].append(key)
    result: dict[Key, Diagnosis] = {}
    for keys in by_version.values():
        drifted = sorted((k for k in keys if comparisons[k].drifted), key=lambda k: k.camera)
        if not drifted:
            continue
        cameras = tuple(k.camera for k in drifted)
        model_wide = len(keys) >= min_cameras and len(drifted) >= model_share * len(keys)
        for key in drifted:
            cause = cause_of(comparisons[key], empty_share)
            if cause == "no-detections":
                result[key] = Diagnosis("camera", cause, (key.camera,), len(keys))
            elif model_wide:
                result[key] = Diagnosis("model", cause, cameras, len(keys))
            elif len(keys) < min_cameras:
                result[key] = Diagnosis("undetermined", cause, (key.camera,), len(keys))
            else:
                result[key] = Diagnosis("camera", cause, (key.camera,), len(keys))
    return result

