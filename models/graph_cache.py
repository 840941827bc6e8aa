"""On-disk cache of ONNX Runtime's optimised CPU graphs, so a worker restart or hot swap skips graph optimisation."""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import onnxruntime as ort

from foundation.errors import CamcountError

logger = logging.getLogger(__name__)


class CacheNotWritable(CamcountError):
    """The optimised-graph cache cannot be written (disk full, read-only): logged, and the model loads without it."""

    code = "RES_004"  # disk
    detail = "cache-not-writable"


def _log_not_writable(message: str) -> None:
    error = CacheNotWritable(message)
    logger.warning("%s %s: %s", error.code, error.detail, error.one_line())


def _space_left(directory: Path, model: str | bytes) -> str:
    """What the disk under ``directory`` has left, in words: ONNX Runtime reports a full disk as a protobuf
    serialisation error, which names neither the disk nor the space."""
    try:
        free = shutil.disk_usage(directory).free
        needed = len(model) if isinstance(model, bytes) else Path(model).stat().st_size
    except OSError:
        return "free space unknown"
    if free < needed:
        return f"the disk is full: {free} bytes free, the graph needs about {needed}"
    return f"{free} bytes free on its disk"


MakeSession = Callable[["str | bytes", bool, "str | None"], ort.InferenceSession]
"""``(model, optimise, save_to)`` -> session on a model file's path or a serialised model: graph optimisation on or
off, the optimised graph saved to ``save_to``."""


def cpu_signature() -> str:
    """Short hash of what ORT's CPU optimisations depend on: architecture, CPU model and instruction-set flags."""
    parts = [platform.machine()]
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        parts.append(platform.processor())
    else:
        seen: set[str] = set()
        for line in cpuinfo.splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "flags", "Features", "CPU part") and key not in seen:
                seen.add(key)
                parts.append(f"{key}={value.strip()}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


class OptimizedGraphCache:
    """Optimised CPU graphs under ``directory``, one file per (weights sha256, ONNX Runtime version, CPU).

    Invariant: a cached graph is only ever loaded for the exact weights it was built from, by the ONNX Runtime
    version that built it, on a CPU with the same model and instruction-set flags (ORT_ENABLE_ALL bakes layout
    choices such as NCHWc blocking for the host's vector width into the graph). Files appear atomically (written
    under a temporary name, then renamed), so concurrent workers never read a partial graph; a cached file that
    fails to load is deleted, and the session is built from the original model and cached again.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path_for(self, weights_sha256: str) -> Path:
        return self.directory / f"{weights_sha256[:32]}-ort{ort.__version__}-cpu{cpu_signature()}.onnx"

    def session(
        self, onnx_path: Path, weights_sha256: str, make_session: MakeSession, graph: bytes | None = None
    ) -> tuple[ort.InferenceSession, str]:
        """A session for ``onnx_path``, or for ``graph`` (a serialised model derived from it) when given, and how it
        was made: ``hit`` (cached graph), ``stored`` or ``uncached``. ``weights_sha256`` identifies what is loaded.

        ``make_session(model, optimise, save_to)`` creates a session with the caller's threads and logging, with graph
        optimisation on or off, saving the optimised graph to ``save_to`` when it is given. ``uncached`` means the
        graph could not be stored (directory not writable, disk full): the session is fine, only slower to create
        next time. A model that cannot be loaded at all raises what ``make_session`` raised.
        """
        model = str(onnx_path) if graph is None else graph
        cached = self.path_for(weights_sha256)
        if cached.is_file():
            try:
                session = make_session(str(cached), False, None)
            except Exception as exc:  # noqa: BLE001 - onnxruntime raises several unrelated exception types
                logger.warning("cached optimised graph %s does not load (%s); rebuilding it", cached, exc)
                cached.unlink(missing_ok=True)
            else:
                return session, "hit"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(prefix=f".{cached.name}.", suffix=".onnx", dir=self.directory)
            os.close(fd)
        except OSError as exc:
            _log_not_writable(f"cannot cache optimised graphs in {self.directory} ({exc}); sessions will optimise on "
                              "every load")
            return make_session(model, True, None), "uncached"
        try:
            session = make_session(model, True, temporary)
            os.replace(temporary, cached)
        except Exception as exc:  # noqa: BLE001 - saving failed, or the model itself is bad: tell them apart
            _log_not_writable(f"cannot store the optimised graph of {onnx_path} in {self.directory} "
                              f"({_space_left(self.directory, model)}; {exc}); trying without the cache")
            return make_session(model, True, None), "uncached"
        finally:
            Path(temporary).unlink(missing_ok=True)
        return session, "stored"
