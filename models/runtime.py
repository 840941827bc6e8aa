"""ONNX Runtime session factory: deliberate provider choice, verified by the session itself, one clear log line."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib.util
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
import onnxruntime as ort

from models.errors import ModelLoadError
from models.graph_cache import OptimizedGraphCache

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


@functools.cache
def preload_cuda_wheels() -> bool:
    """Load CUDA and cuDNN from NVIDIA's pip wheels (``onnxruntime-gpu[cuda,cudnn]``) when they are installed.

    Without this the CUDA and TensorRT providers only find those libraries on the system loader path, so a
    container built on a plain Python image with the wheels would silently run on CPU. Runs once per process
    (loaded libraries are process-wide); returns whether the wheels were there. ONNX Runtime's helper prints its
    findings, so they are sent to the debug log instead of stdout.
    """
    if importlib.util.find_spec("nvidia") is None:
        return False
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        try:
            ort.preload_dlls()
        except Exception as exc:  # noqa: BLE001 - a failed preload only means the providers get skipped
            logger.warning("could not preload CUDA libraries from the nvidia pip wheels: %s", exc)
    for line in printed.getvalue().splitlines():
        logger.debug("onnxruntime.preload_dlls: %s", line)
    return True


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


def tensorrt_batch_profile(model: Path | bytes, max_batch: int,
                           image_size: tuple[int, int] | None = None) -> dict[str, str]:
    """TensorRT optimisation profile options covering batch sizes 1..``max_batch`` (optimised for ``max_batch``).

    Without an explicit profile TensorRT builds its engine for the shapes it has seen and builds again, which takes
    seconds to minutes on a GPU, whenever the dynamic batcher forms a batch outside that range. Dynamic image
    dimensions of an [N, C, H, W] input are fixed to ``image_size`` (height, width), the size camcount feeds.
    ``model`` is a file or a serialised graph.
    Empty when the model's batch dimension is static, when another dimension stays unknown, when the input name
    holds a ``:`` (the options' separator), and when the model cannot be read as ONNX (the session reports that).
    """
    try:
        graph = (onnx.load_model_from_string(model) if isinstance(model, bytes)
                 else onnx.load(str(model), load_external_data=False)).graph
    except Exception:  # noqa: BLE001 - protobuf and OS errors alike; the session creation explains them
        return {}
    initializers = {tensor.name for tensor in graph.initializer}
    model_input = next((value for value in graph.input if value.name not in initializers), None)
    if model_input is None:
        return {}
    dims = [d.dim_value if d.HasField("dim_value") else None for d in model_input.type.tensor_type.shape.dim]
    if image_size is not None and len(dims) == 4:
        dims = [dims[0], dims[1] or 3, dims[2] or image_size[0], dims[3] or image_size[1]]
    if len(dims) < 2 or dims[0] is not None or None in dims[1:] or ":" in model_input.name:
        return {}
    rest = "x".join(str(d) for d in dims[1:])
    return {
        "trt_profile_min_shapes": f"{model_input.name}:1x{rest}",
        "trt_profile_opt_shapes": f"{model_input.name}:{max_batch}x{rest}",
        "trt_profile_max_shapes": f"{model_input.name}:{max_batch}x{rest}",
    }


def tensorrt_engine_cache_prefix(weights_sha256: str | None) -> dict[str, str]:
    """The TensorRT engine cache option that ties cached engines to the weights they were built from.

    ONNX Runtime names cached engines after the graph's structure and the model file's name (``model.onnx`` for
    every registered version), not its weights: without a prefix, a retrained version of the same architecture
    would load the engine of the version cached before it and serve that version's detections.
    """
    return {"trt_engine_cache_prefix": f"camcount_{weights_sha256[:32]}"} if weights_sha256 else {}


def _provider_options(provider: str, cache_dir: Path | None, tensorrt_profile: dict[str, str],
                      weights_sha256: str | None) -> dict[str, Any]:
    if provider == TENSORRT:
        options: dict[str, Any] = {"trt_fp16_enable": True, **tensorrt_profile}
        if cache_dir is not None:
            trt_cache = cache_dir / "tensorrt"
            trt_cache.mkdir(parents=True, exist_ok=True)
            options |= {
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(trt_cache),
                "trt_timing_cache_enable": True,
                "trt_timing_cache_path": str(trt_cache),
                **tensorrt_engine_cache_prefix(weights_sha256),
            }
        return options
    return {}


def _session_options(intra_op_threads: int | None, optimise: bool = True,
                     save_to: str | None = None) -> ort.SessionOptions:
    """Options of every camcount session: ``optimise`` is off for an already optimised graph, and ``save_to`` asks
    ONNX Runtime to write the graph it optimised there."""
    options = ort.SessionOptions()
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimise
                                        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    if save_to is not None:
        options.optimized_model_filepath = save_to
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = intra_op_threads or physical_cores()
    options.inter_op_num_threads = 1
    # ORT's pool threads spin after each parallel section by default, holding their cores while this process's
    # JPEG decode threads, Kafka clients and Python code need them: batch-1 detect on the 2-core VM ran 15-20 %
    # slower with spinning beside other work, and no faster alone (docs/performance.md).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = _ORT_ERROR
    return options


def create_session(
    onnx_path: Path,
    providers: list[str] | None = None,
    cache_dir: Path | None = None,
    intra_op_threads: int | None = None,
    weights_sha256: str | None = None,
    max_batch: int | None = None,
    image_size: tuple[int, int] | None = None,
    graph: bytes | None = None,
) -> SessionInfo:
    """Create an inference session on the first usable provider of ``providers``.

    The session runs ``graph`` (a serialised model derived from ``onnx_path``, e.g. ``models.serving_graph``) when
    it is given, else the file itself; ``onnx_path`` names the model in logs and errors either way, and
    ``weights_sha256`` must then identify ``graph``.

    ``providers`` defaults to TensorRT (fp16, engines cached under ``cache_dir``, one optimisation profile for
    batches 1..``max_batch`` at ``image_size`` (height, width) where the model leaves it open) -> CUDA -> CPU.
    A CPU-only session with ``cache_dir`` and ``weights_sha256`` given reuses (or stores) its optimised graph under
    ``cache_dir/cpu-graphs``. Providers that ONNX Runtime does not list, or whose libraries cannot load, are
    skipped; CPU is always the last resort. The provider really used is read back from the session and logged in
    one line (WARNING when it is not the first choice, with the reasons).
    Raises ModelLoadError when no session can be created.
    """
    wanted = list(providers) if providers else list(DEFAULT_PROVIDERS)
    if any(GPU_DEVICES.get(provider) for provider in wanted):
        preload_cuda_wheels()
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

    profile = (tensorrt_batch_profile(onnx_path if graph is None else graph, max_batch, image_size)
               if TENSORRT in candidates and max_batch else {})
    cpu_graphs = OptimizedGraphCache(cache_dir / "cpu-graphs") if cache_dir and weights_sha256 else None
    attempt = _SessionAttempt(onnx_path, graph, intra_op_threads, cache_dir, profile, cpu_graphs, weights_sha256)
    try:
        session, graph_cache = attempt.on(candidates)
    except Exception as exc:  # onnxruntime raises several unrelated exception types
        if candidates == [CPU]:
            raise _load_error(onnx_path, exc) from exc
        skipped.append(f"{', '.join(p for p in candidates if p != CPU)}: {exc}")
        try:
            session, graph_cache = attempt.on([CPU])
        except Exception as cpu_exc:  # noqa: BLE001 - as above
            raise _load_error(onnx_path, cpu_exc) from cpu_exc
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
        graph_cache=graph_cache,
    )


@dataclass(frozen=True)
class _SessionAttempt:
    """Everything but the provider list that creating one model's session needs."""

    onnx_path: Path
    graph: bytes | None
    intra_op_threads: int | None
    cache_dir: Path | None
    tensorrt_profile: dict[str, str]
    cpu_graphs: OptimizedGraphCache | None
    weights_sha256: str | None

    def on(self, candidates: list[str]) -> tuple[ort.InferenceSession, str]:
        """Session on ``candidates`` and where its optimised graph came from (see SessionInfo.graph_cache)."""
        provider_list = [(p, _provider_options(p, self.cache_dir, self.tensorrt_profile, self.weights_sha256))
                         for p in candidates]

        def make_session(model: str | bytes, optimise: bool = True,
                         save_to: str | None = None) -> ort.InferenceSession:
            options = _session_options(self.intra_op_threads, optimise, save_to)
            return ort.InferenceSession(model, sess_options=options, providers=provider_list)

        if candidates == [CPU] and self.cpu_graphs is not None and self.weights_sha256 is not None:
            return self.cpu_graphs.session(self.onnx_path, self.weights_sha256, make_session, self.graph)
        return make_session(str(self.onnx_path) if self.graph is None else self.graph), "off"


def _load_error(onnx_path: Path, exc: Exception) -> ModelLoadError:
    return ModelLoadError(
        f"ONNX Runtime cannot load {onnx_path}: {exc}. Check that the file is a valid ONNX model "
        "(re-export or re-register it)"
    )
