"""Restoring a counter's per-track numpy arrays from a snapshot state dict, and renumbering their classes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def restore_arrays(target: object, state: Mapping[str, Any], spec: Mapping[str, tuple[type, tuple[int, ...]]],
                   error: type[Exception], what: str) -> None:
    """Set each attribute named in ``spec`` on ``target`` from ``state`` (keyed without the leading underscore).

    ``spec`` maps an attribute name to its dtype and shape. A missing or ill-typed entry raises ``error``
    ("``what`` state is malformed"), and so do arrays of different lengths.
    """
    try:
        for name, (dtype, shape) in spec.items():
            setattr(target, name, np.asarray(state[name.lstrip("_")], dtype).reshape(shape))
    except (KeyError, TypeError, ValueError) as exc:
        raise error(f"{what} state is malformed ({exc}): discard the snapshot") from exc
    if len({len(getattr(target, name)) for name in spec}) != 1:
        raise error(f"{what} state arrays differ in length: discard the snapshot")


def renumber_classes(class_id: np.ndarray, new_ids: np.ndarray, error: type[Exception], what: str) -> np.ndarray:
    """``class_id`` with each saved id ``c`` replaced by ``new_ids[c]`` (same dtype).

    ``new_ids`` maps a class id of the model the snapshot was taken with to the id of the same class name
    in the current model, -1 where the current model lacks that class. An id with no new id raises ``error``.
    """
    renumbered = np.full_like(class_id, -1)
    known = (class_id >= 0) & (class_id < len(new_ids))
    renumbered[known] = new_ids[class_id[known]]
    if (renumbered < 0).any():
        raise error(f"{what} state tracks class ids {sorted(set(class_id[renumbered < 0].tolist()))} that the "
                    "current model does not detect: discard the snapshot")
    return renumbered
