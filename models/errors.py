"""Domain exceptions of the model layer; every one carries a stable ``code`` for logs, metrics and APIs."""

from __future__ import annotations

from typing import ClassVar

from foundation.errors import CamcountError


class ModelError(CamcountError):
    """Base of all model-layer failures. ``str(error)`` starts with the code, e.g. ``[MODEL_002] ...``."""

    code: ClassVar[str] = "MODEL_000"

    def __init__(self, message: str) -> None:
        super().__init__(f"[{self.code}] {message}")
        self.message = message


class ModelNotFound(ModelError):
    """A model reference is malformed, or names a model, version or alias the registry does not hold."""

    code = "MODEL_001"


class ChecksumMismatch(ModelError):
    """The stored weights' sha256 differs from the manifest: the file was modified or corrupted."""

    code = "MODEL_002"


class OutputFormatMismatch(ModelError):
    """The model's inputs or outputs do not match the format, input size or class count its manifest declares."""

    code = "MODEL_003"


class ModelLoadError(ModelError):
    """ONNX Runtime cannot load the model, or the warm-up inference fails."""

    code = "MODEL_004"


class ModelVersionExists(ModelError):
    """A version is registered twice; registered versions are immutable."""

    code = "MODEL_005"
