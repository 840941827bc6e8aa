"""Restoring a counter's per-track numpy arrays from a snapshot state dict."""

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
