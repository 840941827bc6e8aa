"""ONNX Runtime session factory: deliberate provider choice, verified by the session itself, one clear log line."""

from __future__ import annotations

import ctypes
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnxruntime as ort

from models.errors import ModelLoadError, OutputFormatMismatch
from models.graph_cache import OptimizedGraphCache
from models.manifest import ModelManifest

logger = logging.getLogger(__name__)

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
# Where a provider keeps tensors, for IO binding.
GPU_DEVICES = {TENSORRT: "cuda", CUDA: "cuda"}
DEFAULT_PROVIDERS: tuple[str, ...] = (TENSORRT, CUDA, CPU)

# Provider plugins ONNX Runtime loads with dlopen; loading them ourselves first tells us whether their CUDA/TensorRT
# dependencies resolve, without ONNX Runtime printing a multi-line error for every session.
_PROVIDER_LIBRARIES = {
    TENSORRT: "libonnxruntime_providers_tensorrt.so",
    CUDA: "libonnxruntime_providers_cuda.so",
}
_ORT_ERROR = 3


@dataclass(frozen=True)
class SessionInfo:
    """A ready session and what it actually runs on.

    ``provider`` is ``session.get_providers()[0]``, the provider that was really initialised, not the one asked for.
    ``input_shape`` holds ints for static dimensions and strings/None for dynamic ones.
    ``graph_cache`` says where the optimised CPU graph came from: ``hit``, ``stored``, ``uncached`` (cache directory
    not writable) or ``off`` (no cache asked for, or a GPU provider, which keeps its own TensorRT engine cache).
    """

    session: ort.InferenceSession
    provider: str
    input_name: str
    input_shape: tuple[int | str | None, ...]
    output_names: tuple[str, ...]
    graph_cache: str = "off"


def physical_cores() -> int:
    """Number of physical cores (hyper-threads excluded), from /proc/cpuinfo; falls back to ``os.cpu_count()``."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return os.cpu_count() or 1
    cores: set[tuple[str, str]] = set()
    physical_id = core_id = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "physical id":
            physical_id = value
        elif key == "core id":
            core_id = value
            cores.add((physical_id, core_id))
    return len(cores) or os.cpu_count() or 1


def _provider_library_error(provider: str) -> str | None:
    """Why ``provider``'s plugin library cannot be loaded, or None when it loads (or is built into ORT)."""
    library = _PROVIDER_LIBRARIES.get(provider)
    if library is None:
        return None
    path = Path(ort.__file__).parent / "capi" / library
    try:
        ctypes.CDLL(str(path))
    except OSError as exc:
        return str(exc)
    return None


def _provider_options(provider: str, cache_dir: Path | None) -> dict[str, Any]:
    if provider == TENSORRT:
        options: dict[str, Any] = {"trt_fp16_enable": True}
        if cache_dir is not None:
            trt_cache = cache_dir / "tensorrt"
            trt_cache.mkdir(parents=True, exist_ok=True)
            options |= {
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(trt_cache),
                "trt_timing_cache_enable": True,
                "trt_timing_cache_path": str(trt_cache),
            }
        return options
    return {}


def _session_options(intra_op_threads: int | None) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = intra_op_threads or physical_cores()
    options.inter_op_num_threads = 1
    options.log_severity_level = _ORT_ERROR
    return options


def create_session(
    onnx_path: Path,
    providers: list[str] | None = None,
    cache_dir: Path | None = None,
    intra_op_threads: int | None = None,
    weights_sha256: str | None = None,
) -> SessionInfo:
    """Create an inference session on the first usable provider of ``providers``.

    ``providers`` defaults to TensorRT (fp16, engines cached under ``cache_dir``) -> CUDA -> CPU. A CPU-only
    session with ``cache_dir`` and ``weights_sha256`` given reuses (or stores) its optimised graph under
    ``cache_dir/cpu-graphs``. Providers that
    ONNX Runtime does not list, or whose libraries cannot load, are skipped; CPU is always the last resort. The
    provider really used is read back from the session and logged in one line (WARNING when it is not the first
    choice, with the reasons). Raises ModelLoadError when no session can be created.
    """
    wanted = list(providers) if providers else list(DEFAULT_PROVIDERS)
    available = set(ort.get_available_providers())
    skipped: list[str] = []
    candidates: list[str] = []
    for provider in wanted:
        if provider not in available:
            skipped.append(f"{provider}: not in this onnxruntime build")
        elif (error := _provider_library_error(provider)) is not None:
            skipped.append(f"{provider}: {error}")
        elif provider not in candidates:
            candidates.append(provider)
    if CPU not in candidates:
        candidates.append(CPU)

    graph_cache = OptimizedGraphCache(cache_dir / "cpu-graphs") if cache_dir and weights_sha256 else None
    session, graph_cache_use = _try_session(onnx_path, candidates, cache_dir, intra_op_threads, skipped,
                                            graph_cache, weights_sha256)
    used = session.get_providers()[0]
    if used != wanted[0]:
        failed = [p for p in candidates if p not in session.get_providers() and p != CPU]
        skipped.extend(f"{p}: failed to initialise" for p in failed)
        logger.warning(
            "ONNX Runtime for %s runs on %s, not %s (%s)", onnx_path.name, used, wanted[0], "; ".join(skipped)
        )
    else:
        logger.info("ONNX Runtime for %s runs on %s", onnx_path.name, used)

    model_input = session.get_inputs()[0]
    return SessionInfo(
        session=session,
        provider=used,
        input_name=model_input.name,
        input_shape=tuple(model_input.shape),
        output_names=tuple(o.name for o in session.get_outputs()),
        graph_cache=graph_cache_use,
    )


def _try_session(
    onnx_path: Path,
    candidates: list[str],
    cache_dir: Path | None,
    intra_op_threads: int | None,
    skipped: list[str],
    graph_cache: OptimizedGraphCache | None,
    weights_sha256: str | None,
) -> tuple[ort.InferenceSession, str]:
    """Session on ``candidates`` and its graph-cache use; if a GPU provider makes creation throw, retry on CPU
    alone and record why."""
    provider_list = [(p, _provider_options(p, cache_dir)) for p in candidates]

    def make_session(path: str, options: ort.SessionOptions) -> ort.InferenceSession:
        return ort.InferenceSession(path, sess_options=options, providers=provider_list)

    options = _session_options(intra_op_threads)
    try:
        if candidates == [CPU] and graph_cache is not None and weights_sha256 is not None:
            return graph_cache.session(onnx_path, weights_sha256, make_session, options)
        return make_session(str(onnx_path), options), "off"
    except Exception as exc:  # onnxruntime raises several unrelated exception types
        if candidates == [CPU]:
            raise ModelLoadError(
                f"ONNX Runtime cannot load {onnx_path}: {exc}. Check that the file is a valid ONNX model "
                "(re-export or re-register it)"
            ) from exc
        skipped.append(f"{', '.join(p for p in candidates if p != CPU)}: {exc}")
        return _try_session(onnx_path, [CPU], cache_dir, intra_op_threads, skipped, graph_cache, weights_sha256)


def check_input_shape(info: SessionInfo, manifest: ModelManifest) -> None:
    """Raise OutputFormatMismatch unless the model input is [N, 3, H, W] with static H, W equal to the manifest's."""
    shape = info.input_shape
    expected = (None, 3, manifest.input_height, manifest.input_width)
    if len(shape) != 4 or any(
        isinstance(actual, int) and want is not None and actual != want for actual, want in zip(shape, expected)
    ):
        raise OutputFormatMismatch(
            f"model input {info.input_name!r} has shape {list(shape)}, but the manifest declares "
            f"[N, 3, {manifest.input_height}, {manifest.input_width}]: fix input_width/input_height"
        )
