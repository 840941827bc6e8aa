"""Writing a file atomically: readers see the old content or the new, never a partly written file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomically(target: Path, write: Callable[[BinaryIO], object]) -> None:
    """Create ``target`` (and its parent directories) with what ``write`` writes to the handle it is given.

    The content goes to a temp file in the same directory, is fsync'd, then os.replace'd onto ``target``;
    on any failure the temp file is removed and the error re-raised.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
