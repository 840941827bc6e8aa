"""The manifest stored next to every registered ONNX file: what the model is, how to feed it and where it came from."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from models.calibration import BoxCalibration

SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?$"
SEMVER_PATTERN = (
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?$"
)
_SEMVER = re.compile(SEMVER_PATTERN)
# An SPDX license expression: identifiers (AGPL-3.0, LicenseRef-YOLO) joined by AND / OR / WITH.
LICENSE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9.+-]*(?: (?:AND|OR|WITH) [A-Za-z0-9][A-Za-z0-9.+-]*)*$"

ModelFormat = Literal["yolov5", "yolov8", "end2end"]
Precision = Literal["fp32", "fp16", "int8"]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]


def is_semver(text: str) -> bool:
    """True when ``text`` is ``MAJOR.MINOR.PATCH[-pre]`` (semver 2.0 without build metadata)."""
    return _SEMVER.match(text) is not None


class ModelManifest(BaseModel):
    """Immutable description of one registered model version.

    Invariants: ``name`` is a lowercase slug; ``version`` is a semantic version; ``class_names`` is non-empty and
    its length is the class count the model's output must have; ``std`` is strictly positive; ``created_at`` is UTC.
    Preprocessing is ``(pixel * scale - mean) / std`` per channel, in ``color_order``, after letterboxing.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=SLUG_PATTERN, description="lowercase slug: a-z, 0-9, '-', '_'")
    version: str = Field(description="semantic version MAJOR.MINOR.PATCH[-pre], e.g. 1.2.0 or 2.0.0-rc.1")
    format: ModelFormat
    input_width: int = Field(gt=0)
    input_height: int = Field(gt=0)
    color_order: Literal["RGB", "BGR"] = "RGB"
    scale: float = Field(default=1 / 255, gt=0)
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    letterbox_fill: int = Field(default=114, ge=0, le=255)
    class_names: list[str] = Field(min_length=1)
    confidence_threshold: Probability = 0.25
    nms_threshold: Probability = 0.45
    precision: Precision = "fp32"
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="lowercase hex sha256 of model.onnx")
    source: dict[str, Any] = Field(default_factory=dict, description="free-form lineage")
    box_calibration: BoxCalibration | None = Field(
        None, description="how much taller than its boxes objects are, learnt from labels (models.calibration); "
        "counting anchors use it. None: the boxes are used as they are")
    license: str | None = Field(
        None, pattern=LICENSE_PATTERN, max_length=100,
        description="the weights' license as an SPDX expression, e.g. AGPL-3.0; shown by `camcount models list`. "
        "None: not recorded")
    created_at: datetime

    @field_validator("version")
    @classmethod
    def _semver(cls, value: str) -> str:
        if not is_semver(value):
            raise ValueError(f"{value!r} is not a semantic version: use MAJOR.MINOR.PATCH[-pre], e.g. 1.0.0")
        return value

    @field_validator("std")
    @classmethod
    def _positive_std(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(value) <= 0:
            raise ValueError(f"every std must be > 0, got {value}")
        return value

    @field_validator("class_names")
    @classmethod
    def _non_blank_class_names(cls, value: list[str]) -> list[str]:
        if any(not name.strip() for name in value):
            raise ValueError("class names must not be blank")
        return value

    @field_validator("created_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("created_at must be timezone-aware (UTC), e.g. 2025-01-31T12:00:00Z")
        return value.astimezone(UTC)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)
