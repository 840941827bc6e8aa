"""Domain exceptions of the model layer; every one carries a stable ``code`` for logs, metrics and APIs."""

from __future__ import annotations

from typing import ClassVar

from foundation.errors import CamcountError


class ModelError(CamcountError):
    """Base of all model-layer failures. ``str(error)`` starts with the code, e.g. ``[MODEL_002] ...``; ``detail``
    says which of the code's cases it is (e.g. ``checksum-mismatch``)."""

    code: ClassVar[str] = "MODEL_002"
    detail: ClassVar[str] = "load-failed"

    def __init__(self, message: str) -> None:
        super().__init__(f"[{self.code}] {message}")
        self.message = message


class ModelNotFound(ModelError):
    """A model reference is malformed, or names a model, version or alias the registry does not hold."""

    code = "MODEL_001"  # not found
    detail = "not-found"


class ManifestUnreadable(ModelError):
    """A version's manifest.json is not valid JSON, or holds fields or values this release does not know (one written
    by a newer camcount): the version is refused like one that does not load, and whatever serves keeps serving."""

    code = "MODEL_002"  # load failed
    detail = "manifest-unreadable"


class ChecksumMismatch(ModelError):
    """The stored weights' sha256 differs from the manifest: the file was modified or corrupted."""

    code = "MODEL_002"  # load failed
    detail = "checksum-mismatch"


class OutputFormatMismatch(ModelError):
    """The model's inputs or outputs do not match the format, input size or class count its manifest declares."""

    code = "MODEL_004"  # version mismatch: this version is not what its manifest says
    detail = "format-mismatch"


class ModelLoadError(ModelError):
    """ONNX Runtime cannot load the model, or the warm-up inference fails."""

    code = "MODEL_002"  # load failed
    detail = "runtime-load-failed"


class LoadTimeout(ModelLoadError):
    """A model version did not load and warm up within ``model.load_timeout_s``; the fallback chain serves meanwhile
    and the version is retried with backoff."""

    detail = "load-timeout"


class InferenceFailed(ModelError):
    """ONNX Runtime failed while running a batch (a kernel error, device memory); the batch's frames get ERROR
    records and the worker goes on."""

    code = "MODEL_003"  # inference failed
    detail = "inference-failed"


class ModelVersionExists(ModelError):
    """A version is registered twice; registered versions are immutable."""

    code = "MODEL_004"  # version mismatch
    detail = "version-exists"


class PostprocessingFailed(InferenceFailed):
    """The model ran, but its outputs could not be decoded into boxes (a shape or value the format does not allow at
    this batch size); handled like an inference failure (the fallback chain re-runs the batch)."""

    code = "INF_003"  # postprocessing failed
    detail = "postprocess-failed"


class HostMemoryExhausted(InferenceFailed):
    """The host ran out of memory while running a batch."""

    code = "RES_001"  # memory
    detail = "host-memory-exhausted"


class DeviceMemoryExhausted(InferenceFailed):
    """The GPU ran out of memory while running a batch (lower inference.max_batch, or fewer models per GPU)."""

    code = "RES_002"  # GPU
    detail = "gpu-memory-exhausted"


class GpuUnavailable(ModelLoadError):
    """``model.require_gpu`` is set, but no GPU execution provider can run the model here (it would run on CPU)."""

    code = "RES_002"  # GPU
    detail = "gpu-unavailable"
