"""Detector: registered ONNX model + session + batch preprocessing + decoding, frames in, Detections out."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from models.detections import Detections
from models.errors import (
    DeviceMemoryExhausted,
    HostMemoryExhausted,
    InferenceFailed,
    ModelError,
    ModelLoadError,
    PostprocessingFailed,
)
from models.manifest import ModelManifest
from models.postprocess import DEFAULT_MAX_DETECTIONS, OutputLayout, check_output_shape, postprocess
from models.preprocess import BatchPreprocessor, LetterboxTransform, synthetic_frame
from models.registry import ModelReference, ModelRegistry, RegisteredModel, verify_checksum
from models.runtime import GPU_DEVICES, SessionInfo, create_session
from models.serving_graph import CANDIDATES, SERVING_INPUT, raw_output, serving_graph

logger = logging.getLogger(__name__)

State = Literal["loading", "ready", "error"]
_OUT_OF_MEMORY_MESSAGES = ("Failed to allocate memory", "out of memory", "CUDNN_STATUS_ALLOC_FAILED",
                           "bad_alloc")


def open_session(model: RegisteredModel, providers: list[str] | None = None, cache_dir: Path | None = None,
                 intra_op_threads: int | None = None, max_batch: int = 8) -> SessionInfo:
    """A session on ``model``'s serving graph (``models.serving_graph``), the graph a Detector runs.

    Raises OutputFormatMismatch when the model's input contradicts its manifest, ModelLoadError when it cannot load.
    """
    graph = serving_graph(model.path, model.manifest)
    return create_session(model.path, providers, cache_dir, intra_op_threads,
                          weights_sha256=hashlib.sha256(graph).hexdigest(), max_batch=max_batch,
                          image_size=(model.manifest.input_height, model.manifest.input_width), graph=graph)


@dataclass(frozen=True)
class DetectParams:
    """One image's thresholds for ``Detector.detect_each``: None means the manifest's."""

    conf: float | None = None
    iou: float | None = None
    max_detections: int = DEFAULT_MAX_DETECTIONS


@dataclass(frozen=True)
class Timings:
    """Wall-clock milliseconds of the last ``detect`` call, summed over its chunks."""

    preprocess_ms: float = 0.0
    infer_ms: float = 0.0
    postprocess_ms: float = 0.0


class Detector:
    """Runs one model version on batches of BGR uint8 frames.

    Invariants: the session runs the model's serving graph (``open_session``; its input shape was checked against
    the manifest there), so the host only letterboxes, and only the candidates come back from the device (the raw
    output, for formats without a tail); the batch size sent to the session is at most
    ``max_batch`` (for a model with a static batch dimension B, exactly B, the extra slots ignored).
    Concurrent ``detect`` calls are serialised (they share the preallocated batch).

    On a GPU provider the session runs through IO binding (``io_binding=None`` means: only there): the batch is
    copied to the device once and outputs are allocated by ONNX Runtime on the device, then copied back, instead of
    the extra staging copies of ``session.run``. ``io_binding=True`` forces it on any provider (tests use it on CPU).
    """

    def __init__(self, model: RegisteredModel, session: SessionInfo, max_batch: int = 8,
                 io_binding: bool | None = None) -> None:
        if session.input_name != SERVING_INPUT:
            raise ValueError(f"the session takes {session.input_name!r}, not the serving graph's uint8 input: create "
                             "it with models.detector.open_session")
        raw = raw_output(session.output_names)
        tail = CANDIDATES in session.output_names
        self._serving_outputs = (CANDIDATES,) if tail else (raw,)
        self._layout: OutputLayout = "candidates" if tail else model.manifest.format
        self._warmup_outputs = (raw, *self._serving_outputs) if tail else (raw,)
        static_batch = session.input_shape[0]
        self._static_batch = static_batch if isinstance(static_batch, int) else None
        self.max_batch = self._static_batch or max_batch
        self.model = model
        self.manifest: ModelManifest = model.manifest
        self.name = model.manifest.name
        self.version = model.manifest.version
        self.provider = session.provider
        self._session = session
        self._device = GPU_DEVICES.get(session.provider, "cpu")
        use_binding = self._device != "cpu" if io_binding is None else io_binding
        self._binding = session.session.io_binding() if use_binding else None
        self._preprocessor = BatchPreprocessor(model.manifest, self.max_batch)
        self._state: State = "loading"
        self._error: str | None = None
        self._warmup_ms: float | None = None
        self._lock = threading.Lock()
        self.last_timings = Timings()

    @classmethod
    def load(
        cls,
        registry: ModelRegistry,
        ref: str | ModelReference,
        providers: list[str] | None = None,
        max_batch: int = 8,
        warmup: bool = True,
        cache_dir: Path | None = None,
        intra_op_threads: int | None = None,
    ) -> "Detector":
        """Resolve ``ref``, verify its sha256 (ChecksumMismatch), create the session and, by default, warm up.

        Raises ModelNotFound, ChecksumMismatch, OutputFormatMismatch or ModelLoadError.
        """
        return cls.from_model(registry.resolve(ref), providers, max_batch, warmup, cache_dir, intra_op_threads)

    @classmethod
    def from_model(
        cls,
        model: RegisteredModel,
        providers: list[str] | None = None,
        max_batch: int = 8,
        warmup: bool = True,
        cache_dir: Path | None = None,
        intra_op_threads: int | None = None,
    ) -> "Detector":
        """Detector for ``model`` (from a registry, or a path + manifest); verifies its sha256 first.

        ``cache_dir`` keeps TensorRT engines and optimised CPU graphs between loads (see models.runtime).
        """
        verify_checksum(model)
        detector = cls(model, open_session(model, providers, cache_dir, intra_op_threads, max_batch), max_batch)
        if warmup:
            detector.warmup()
        else:
            detector._state = "ready"
        return detector

    def warmup_batch_sizes(self) -> list[int]:
        """Batch sizes the warm-up runs, largest first so memory arenas grow once.

        A full batch and a single frame on CPU, which catches models that only run at one batch size at load time,
        not mid-stream. Every size from ``max_batch`` down to 1 on a GPU, where the first run of each input shape
        pays for cuDNN's convolution algorithm search (or TensorRT's context set-up) and would otherwise stall
        the first partial batch the dynamic batcher forms. Only the static size for a static-batch model.
        """
        if self._static_batch is not None:
            return [self._static_batch]
        if self._device != "cpu":
            return list(range(self.max_batch, 0, -1))
        return sorted({self.max_batch, 1}, reverse=True)

    def warmup(self) -> float:
        """Run synthetic batches (``warmup_batch_sizes``), check the output layout, mark ready; returns milliseconds
        taken.

        On failure the state becomes ``error`` and the exception is raised (ModelLoadError unless it is already a
        ModelError such as OutputFormatMismatch).
        """
        start = time.perf_counter()
        try:
            frame = synthetic_frame()
            for index in range(self.max_batch):
                self._preprocessor.fill(index, frame)
            for batch_size in self.warmup_batch_sizes():
                outputs = self._run(batch_size, self._warmup_outputs)
                check_output_shape(outputs[0], self.manifest.format, self.manifest.num_classes, batch_size)
        except Exception as exc:
            self._state, self._error = "error", str(exc)
            if isinstance(exc, ModelError) and not isinstance(exc, InferenceFailed):  # a failed warm-up is a load
                raise
            raise ModelLoadError(
                f"warm-up of {self.name}@{self.version} on {self.provider} failed: {exc}; "
                "try providers=['CPUExecutionProvider'] or re-export the model"
            ) from exc
        self._warmup_ms = (time.perf_counter() - start) * 1e3
        self._state = "ready"
        logger.info("%s@%s ready on %s (warm-up %.1f ms)", self.name, self.version, self.provider, self._warmup_ms)
        return self._warmup_ms

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "state": self._state,
            "name": self.name,
            "version": self.version,
            "provider": self.provider,
            "graph_cache": self._session.graph_cache,
            "warmup_ms": self._warmup_ms,
        }
        if self._error is not None:
            status["error"] = self._error
        return status

    def detect(
        self,
        images: Sequence[np.ndarray],
        conf: float | None = None,
        iou: float | None = None,
        max_detections: int = DEFAULT_MAX_DETECTIONS,
    ) -> list[Detections]:
        """One Detections per BGR uint8 image, in that image's pixel coordinates.

        ``conf`` and ``iou`` override the manifest thresholds for this call (A/B parameter variants).
        """
        conf = self.manifest.confidence_threshold if conf is None else conf
        iou = self.manifest.nms_threshold if iou is None else iou
        return self._detect(images, lambda outputs, transforms, _start: postprocess(
            outputs, self._layout, transforms, conf, iou, max_detections))

    def detect_each(self, images: Sequence[np.ndarray], params: Sequence[DetectParams]) -> list[Detections]:
        """As ``detect``, with each image's own thresholds (``params[i]`` for ``images[i]``): requests with different
        options share one model run, and only their postprocessing differs. Same results as one ``detect`` call per
        image with that image's parameters."""
        if len(params) != len(images):
            raise ValueError(f"{len(images)} images but {len(params)} parameter sets")

        def each(outputs: list[np.ndarray], transforms: list[LetterboxTransform], start: int) -> list[Detections]:
            found = []
            for index, transform in enumerate(transforms):
                p = params[start + index]
                conf = self.manifest.confidence_threshold if p.conf is None else p.conf
                iou = self.manifest.nms_threshold if p.iou is None else p.iou
                found.extend(postprocess([output[index : index + 1] for output in outputs], self._layout,
                                         [transform], conf, iou, p.max_detections))
            return found

        return self._detect(images, each)

    def _detect(self, images: Sequence[np.ndarray],
                post: Callable[[list[np.ndarray], list[LetterboxTransform], int], list[Detections]]
                ) -> list[Detections]:
        """Preprocess, run and ``post``-process ``images`` in chunks of ``max_batch``; ``post`` gets a chunk's
        outputs, transforms and the index of its first image."""
        pre_ms = infer_ms = post_ms = 0.0
        results: list[Detections] = []
        with self._lock:
            for start in range(0, len(images), self.max_batch):
                chunk = images[start : start + self.max_batch]
                t0 = time.perf_counter()
                transforms: list[LetterboxTransform] = [
                    self._preprocessor.fill(index, image) for index, image in enumerate(chunk)
                ]
                t1 = time.perf_counter()
                outputs = self._run(self._static_batch or len(chunk), self._serving_outputs)
                t2 = time.perf_counter()
                try:
                    results.extend(post(outputs, transforms, start))
                except (ValueError, IndexError) as exc:  # outputs this format cannot decode at this batch size
                    raise PostprocessingFailed(f"{self.name}@{self.version}: outputs of shapes "
                                               f"{[list(o.shape) for o in outputs]} cannot be decoded as "
                                               f"{self.manifest.format}: {exc}") from exc
                t3 = time.perf_counter()
                pre_ms += (t1 - t0) * 1e3
                infer_ms += (t2 - t1) * 1e3
                post_ms += (t3 - t2) * 1e3
            self.last_timings = Timings(pre_ms, infer_ms, post_ms)
        return results

    def _run(self, batch_size: int, output_names: tuple[str, ...]) -> list[np.ndarray]:
        batch = self._preprocessor.batch(batch_size)
        try:
            if self._binding is None:
                return self._session.session.run(list(output_names), {self._session.input_name: batch})
            self._binding.bind_cpu_input(self._session.input_name, batch)
            self._binding.clear_binding_outputs()
            for name in output_names:
                self._binding.bind_output(name, self._device)
            self._session.session.run_with_iobinding(self._binding)
            return self._binding.copy_outputs_to_cpu()
        except Exception as exc:  # ONNX Runtime raises its own (Fail, RuntimeException, ...) and RuntimeError
            raise self._run_failure(exc, batch_size) from exc

    def _run_failure(self, exc: Exception, batch_size: int) -> InferenceFailed:
        """The taxonomy's error for a failed model run: out of memory (ONNX Runtime's allocator messages, or
        MemoryError) is RES_002 on a GPU provider and RES_001 on CPU; anything else MODEL_003."""
        message = f"{self.name}@{self.version} failed on a batch of {batch_size}: {exc}"
        out_of_memory = isinstance(exc, MemoryError) or any(m in str(exc) for m in _OUT_OF_MEMORY_MESSAGES)
        if out_of_memory and self.provider in GPU_DEVICES:
            return DeviceMemoryExhausted(f"{message}; lower inference.max_batch or load fewer models per GPU")
        if out_of_memory:
            return HostMemoryExhausted(f"{message}; give the process more memory or lower inference.max_batch")
        return InferenceFailed(message)
