"""The definition of an A/B experiment: its variants, how cameras are assigned, guardrails and the decision rule.

Invariants of a valid :class:`Experiment`:

- at least two variants, with unique slug names, positive weights and ``NAME@VERSION_OR_ALIAS`` model references;
- ``control`` names one of the variants (by default the first one);
- ``salt`` is set (by default the experiment name), so assignment is a pure function of the definition;
- a shadow candidate, when shadowing is enabled, is a variant other than the control.

Use :func:`load_experiment` on untrusted input (YAML, JSON, a CLI): its :class:`ExperimentConfigError` lists
every problem as ``field.path: message``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from foundation.errors import ConfigError
from models.manifest import SLUG_PATTERN, is_semver

Slug = Annotated[str, Field(pattern=SLUG_PATTERN, description="lowercase slug: a-z, 0-9, '-', '_'")]
Metric = Literal["infer_ms", "e2e_ms", "detections_per_frame", "mean_confidence", "crossings_per_camera_hour"]

# Which direction is an improvement for each metric; the decision rule and the report read this table.
LOWER_IS_BETTER: dict[str, bool] = {
    "infer_ms": True,
    "e2e_ms": True,
    "detections_per_frame": False,
    "mean_confidence": False,
    "crossings_per_camera_hour": False,
}

_SLUG = re.compile(SLUG_PATTERN)


class ExperimentConfigError(ConfigError):
    """An experiment definition is invalid; the message lists each offending field and how to fix it."""

    code = "CFG_003"
    detail = "invalid-experiment"


class Variant(BaseModel):
    """One arm of an experiment: a model reference plus optional threshold overrides."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Slug
    model: str = Field(description="NAME@VERSION_OR_ALIAS, e.g. yolov4-tiny@1.1.0 or yolov4-tiny@production")
    weight: float = Field(1.0, gt=0.0, allow_inf_nan=False, description="share of cameras, relative to the others")
    confidence_threshold: float | None = Field(None, ge=0.0, le=1.0)
    nms_threshold: float | None = Field(None, ge=0.0, le=1.0)

    @field_validator("model")
    @classmethod
    def _model_reference(cls, value: str) -> str:
        name, at, selector = value.partition("@")
        if not (at and _SLUG.match(name) and (is_semver(selector) or _SLUG.match(selector))):
            raise ValueError(
                f"{value!r} is not NAME@VERSION_OR_ALIAS: write e.g. yolov4-tiny@1.1.0 or yolov4-tiny@production"
            )
        return value

    @property
    def model_name(self) -> str:
        return self.model.partition("@")[0]

    @property
    def model_selector(self) -> str:
        """The version or alias after ``@``."""
        return self.model.partition("@")[2]


class Guardrails(BaseModel):
    """Limits that stop an experiment early when a candidate breaches one for ``breach_seconds`` without pause.

    Latency here is end-to-end (``e2e_ms``: capture to detections), what a slower model costs the product.
    Live (``GuardrailMonitor``), error rate and p95 latency are measured over the last ``window_seconds`` of a
    variant's frames, and only once that window holds ``min_window_frames`` frames (a p95 of five is noise);
    the final report applies the same two limits to each candidate's whole sample.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_error_rate: float = Field(0.05, gt=0.0, le=1.0)
    max_p95_latency_ms: float = Field(500.0, gt=0.0, allow_inf_nan=False)
    breach_seconds: float = Field(60.0, gt=0.0, allow_inf_nan=False)
    window_seconds: float = Field(60.0, gt=0.0, allow_inf_nan=False)
    min_window_frames: int = Field(50, ge=1)
    max_output_drift: float | None = Field(None, gt=0.0, le=1.0, allow_inf_nan=False)
    """Jensen-Shannon distance (base 2, 0 to 1) between a candidate's outputs and the control's (detections per
    frame, mean confidence per frame; the larger of the two) above which the candidate is held: the report keeps
    the control, ``ab guard`` stops the experiment once it lasted ``breach_seconds``. None: not guarded. 0.1 is
    the drift monitor's threshold; with cameras split between variants the scenes differ too, so set it above what
    an A/A split of your cameras shows."""


class Shadow(BaseModel):
    """Shadow inference: a deterministic ``sample_rate`` share of frames is also run through ``candidate``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    candidate: Slug | None = None
    sample_rate: float = Field(0.1, ge=0.0, le=1.0)


class DecisionRule(BaseModel):
    """What "better" means for this experiment (see ``experiments.report`` for the full rule).

    ``primary_metric`` must improve significantly; every metric in ``non_inferiority_margins`` must not get
    worse by more than its margin, a fraction of the control's mean (0.05 = 5 %). Directions come from
    ``LOWER_IS_BETTER``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    primary_metric: Metric = "infer_ms"
    non_inferiority_margins: dict[Metric, Annotated[float, Field(gt=0.0, lt=1.0)]] = Field(
        default_factory=lambda: {"detections_per_frame": 0.05}
    )


class Experiment(BaseModel):
    """An A/B test of model versions or threshold settings on live traffic (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Slug
    salt: str = Field(min_length=1, description="hash salt for assignment; default: the experiment name")
    variants: list[Variant] = Field(min_length=2)
    control: Slug = Field(description="the variant others are compared against; default: the first variant")
    assignment: Literal["camera", "time_slot"] = Field(
        "camera", description="camera: a camera keeps its variant; time_slot: re-drawn per camera every slot"
    )
    slot_minutes: int = Field(60, ge=1)
    min_samples_per_variant: int = Field(500, ge=2, description="frames each variant needs before any verdict")
    alpha: float = Field(0.05, gt=0.0, lt=0.5)
    guardrails: Guardrails = Field(default_factory=Guardrails)
    shadow: Shadow = Field(default_factory=Shadow)
    decision: DecisionRule = Field(default_factory=DecisionRule)
    status: Literal["draft", "running", "stopped"] = "draft"
    started_at: datetime | None = None
    stopped_at: datetime | None = None
    stop_reason: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _defaults_from_other_fields(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        filled = dict(data)
        if filled.get("salt") is None and isinstance(filled.get("name"), str):
            filled["salt"] = filled["name"]
        variants = filled.get("variants")
        if filled.get("control") is None and isinstance(variants, list) and variants:
            first = variants[0]
            filled["control"] = first.name if isinstance(first, Variant) else dict(first).get("name")
        return filled

    @field_validator("variants")
    @classmethod
    def _unique_variant_names(cls, variants: list[Variant]) -> list[Variant]:
        names = [variant.name for variant in variants]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"variant names must be unique; rename the repeated {duplicates}")
        return variants

    @model_validator(mode="after")
    def _references_exist(self) -> Experiment:
        names = [variant.name for variant in self.variants]
        if self.control not in names:
            raise ValueError(f"control: {self.control!r} is not a variant; use one of {names}")
        if self.shadow.enabled:
            if self.shadow.candidate is None:
                raise ValueError("shadow.candidate: shadowing is enabled, so name the variant to shadow")
            if self.shadow.candidate not in names:
                raise ValueError(f"shadow.candidate: {self.shadow.candidate!r} is not a variant; use one of {names}")
            if self.shadow.candidate == self.control:
                raise ValueError("shadow.candidate: the control cannot shadow itself; name another variant")
        if self.status == "stopped" and self.stopped_at is None:
            raise ValueError("stopped_at: a stopped experiment records when it stopped")
        return self

    def variant(self, name: str) -> Variant:
        """The variant called ``name``; raises KeyError naming the valid ones."""
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise KeyError(f"experiment {self.name!r} has no variant {name!r}; it has {self.variant_names}")

    @property
    def variant_names(self) -> list[str]:
        return [variant.name for variant in self.variants]

    @property
    def candidates(self) -> list[Variant]:
        """Every variant except the control, in definition order."""
        return [variant for variant in self.variants if variant.name != self.control]


def load_experiment(data: Mapping[str, Any]) -> Experiment:
    """Validate ``data`` into an Experiment, or raise ExperimentConfigError listing ``field.path: message``."""
    try:
        return Experiment.model_validate(data)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            path = ".".join(str(part) for part in error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            lines.append(f"{path}: {message}" if path else message)
        name = data.get("name", "<unnamed>") if isinstance(data, Mapping) else "<unnamed>"
        raise ExperimentConfigError(f"experiment {name!r} is invalid:\n  " + "\n  ".join(lines)) from exc
