"""Per-camera counting configuration: classes, counting lines, zones and tracker tuning.

The YAML file has the shape::

    defaults:            # optional; any CameraConfig field except camera_id
      classes: [person]
      lines: [...]
    cameras:             # optional when defaults is given
      CAMERA_ID: {...}   # CameraConfig fields; mappings (tracker) merge into defaults, lists replace them

A camera listed under ``cameras`` inherits ``defaults``; an unlisted camera gets ``defaults`` as they are.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from foundation.errors import ConfigError

logger = logging.getLogger(__name__)

Anchor = Literal["bottom_center", "center", "top_center"]
Coordinate = Annotated[float, Field(allow_inf_nan=False)]
Point = tuple[Coordinate, Coordinate]
Name = Annotated[str, Field(min_length=1)]

# Polygons with less area than this (px^2) are treated as degenerate (collinear or repeated points).
_MIN_POLYGON_AREA = 1.0


class CameraConfigError(ConfigError):
    """A camera config file or entry is invalid; the message names the file and the field path to fix."""

    code = "CFG_002"
    detail = "invalid-camera-config"


class LineConfig(BaseModel):
    """A counting segment from ``start`` to ``end``.

    Direction convention: a crossing onto the side where cross(end - start, p - start) > 0 is ``in``,
    onto the other side ``out``. Example in image coordinates (y down): for a vertical line from
    (384, 120) down to (384, 576), cross > 0 for x < 384, so walking right-to-left is ``in``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    start: Point
    end: Point
    classes: list[Name] | None = Field(None, description="override of the camera's classes for this line")
    anchor: Anchor | None = Field(None, description="override of the camera's anchor for this line")
    min_distance_px: float = Field(
        4.0,
        ge=0.0,
        allow_inf_nan=False,
        description="hysteresis: a crossing is confirmed once the anchor is this far past the line",
    )
    min_stay_ms: int = Field(
        500,
        ge=0,
        description="a crossing is confirmed once the anchor has also stayed on the new side this long (capture "
        "time); coming back sooner cancels it, and a track that ends while its crossing waits counts if its last "
        "anchor was min_distance_px past",
    )
    min_anchor_confidence: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="a tracked box below this confidence keeps its track alive but does not move the track's "
        "anchor on this line (the line treats the frame as one in which the track was not seen)",
    )

    @field_validator("end")
    @classmethod
    def _end_differs_from_start(cls, end: tuple[float, float], info: ValidationInfo) -> tuple[float, float]:
        if info.data.get("start") == end:
            raise ValueError("line start and end are the same point")
        return end


class ZoneConfig(BaseModel):
    """A polygonal zone; occupancy, entries, exits and dwell are counted for anchors inside it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    polygon: list[Point] = Field(min_length=3)
    classes: list[Name] | None = Field(None, description="override of the camera's classes for this zone")
    anchor: Anchor | None = Field(None, description="override of the camera's anchor for this zone")

    @field_validator("polygon")
    @classmethod
    def _polygon_has_area(cls, polygon: list[tuple[float, float]]) -> list[tuple[float, float]]:
        xs = [p[0] for p in polygon]
        ys = [p[1] for p in polygon]
        twice_area = sum(xs[i] * ys[i - 1] - xs[i - 1] * ys[i] for i in range(len(polygon)))
        if abs(twice_area) / 2 < _MIN_POLYGON_AREA:
            raise ValueError("polygon is degenerate (no area): give at least 3 points that are not collinear")
        return polygon


class TrackerConfig(BaseModel):
    """ByteTrack tuning. Invariant: low_threshold < high_threshold <= new_track_threshold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    high_threshold: float = Field(0.5, gt=0.0, le=1.0, description="boxes at or above are first-stage boxes")
    low_threshold: float = Field(0.1, ge=0.0, le=1.0, description="boxes below are ignored")
    new_track_threshold: float = Field(0.6, gt=0.0, le=1.0, description="unmatched boxes at or above start tracks")
    match_iou: float = Field(0.2, gt=0.0, le=1.0, description="least IoU to match a high box to a track")
    low_match_iou: float = Field(0.5, gt=0.0, le=1.0, description="least IoU to match a low box to a track")
    iou_buffer: float = Field(
        0.3, ge=0.0, le=2.0,
        description="boxes are widened by this fraction of their size on each side before matching (buffered IoU)",
    )
    max_gap_frames: int = Field(30, ge=0, description="frames a lost track survives unmatched (occlusion)")
    min_hits: int = Field(3, ge=1, description="consecutive matches before a new track gets an id")
    max_stall_ms: int = Field(
        10_000, ge=0,
        description="a frame captured longer than this after the last tracked one ends every track first, as the "
                    "end of the stream would (a stalled or reconnected camera, frames skipped after an outage); "
                    "0: never",
    )

    @field_validator("low_threshold")
    @classmethod
    def _low_below_high(cls, low: float, info: ValidationInfo) -> float:
        high = info.data.get("high_threshold")
        if high is not None and low >= high:
            raise ValueError(f"low_threshold must be below high_threshold ({high})")
        return low

    @field_validator("new_track_threshold")
    @classmethod
    def _new_track_not_below_high(cls, new_track: float, info: ValidationInfo) -> float:
        high = info.data.get("high_threshold")
        if high is not None and new_track < high:
            raise ValueError(f"new_track_threshold must be at least high_threshold ({high})")
        return new_track


class CameraConfig(BaseModel):
    """What to count on one camera. Invariant: line and zone names are unique, and every line/zone
    class override is one of ``classes``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    camera_id: Name
    classes: list[Name] = Field(default_factory=lambda: ["person"], min_length=1)
    anchor: Anchor = "bottom_center"
    lines: list[LineConfig] = Field(default_factory=list)
    zones: list[ZoneConfig] = Field(default_factory=list)
    tracker: TrackerConfig = Field(default_factory=TrackerConfig)

    @field_validator("lines", "zones")
    @classmethod
    def _names_unique(cls, items: list[LineConfig] | list[ZoneConfig]) -> list[LineConfig] | list[ZoneConfig]:
        seen: dict[str, int] = {}
        for index, item in enumerate(items):
            if item.name in seen:
                raise ValueError(f"duplicate name {item.name!r} at [{seen[item.name]}] and [{index}]: rename one")
            seen[item.name] = index
        return items

    @model_validator(mode="after")
    def _overrides_are_counted_classes(self) -> "CameraConfig":
        for kind, items in (("lines", self.lines), ("zones", self.zones)):
            for index, item in enumerate(items):
                unknown = sorted(set(item.classes or ()) - set(self.classes))
                if unknown:
                    raise ValueError(
                        f"{kind}[{index}].classes: {unknown} not in the camera's classes {self.classes}: "
                        "add them to classes or remove them from the override"
                    )
        return self

    def line_classes(self, line: LineConfig) -> list[str]:
        return line.classes if line.classes is not None else self.classes

    def zone_classes(self, zone: ZoneConfig) -> list[str]:
        return zone.classes if zone.classes is not None else self.classes


class CameraConfigs:
    """Validated camera configs of one file. ``for_camera`` falls back to ``defaults`` for unlisted cameras."""

    def __init__(self, source: str, cameras: dict[str, CameraConfig], defaults: dict[str, Any] | None) -> None:
        self.source = source
        self.cameras = cameras
        self._defaults = defaults

    def for_camera(self, camera_id: str) -> CameraConfig:
        if camera_id in self.cameras:
            return self.cameras[camera_id]
        if self._defaults is None:
            raise CameraConfigError(
                f"{self.source}: camera {camera_id!r} is not listed under cameras and there are no defaults: "
                f"add cameras.{camera_id} or a defaults section"
            )
        return _validate_camera(self.source, f"cameras.{camera_id}", {**self._defaults, "camera_id": camera_id})


def load_camera_configs(path: str | Path) -> CameraConfigs:
    """Read and validate every camera of a YAML file (shape in the module docstring)."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CameraConfigError(f"{source}: cannot read camera config: {exc.strerror}") from exc
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CameraConfigError(f"{source}: not valid YAML: {exc}") from exc
    return parse_camera_configs(document, source)


def parse_camera_configs(document: Any, source: str = "<camera config>") -> CameraConfigs:
    """Validate an already-parsed document; ``source`` names it in error messages."""
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise CameraConfigError(f"{source}: top level must be a mapping with 'defaults' and/or 'cameras'")
    unknown = sorted(set(document) - {"defaults", "cameras"})
    if unknown:
        raise CameraConfigError(
            f"{source}: unknown top-level keys {unknown}: only 'defaults' and 'cameras' are allowed"
        )
    defaults = document.get("defaults")
    cameras = document.get("cameras") or {}
    if defaults is not None and not isinstance(defaults, dict):
        raise CameraConfigError(f"{source}: defaults: must be a mapping of camera fields")
    if not isinstance(cameras, dict):
        raise CameraConfigError(f"{source}: cameras: must be a mapping of camera id to camera fields")
    if defaults is None and not cameras:
        raise CameraConfigError(f"{source}: no cameras and no defaults: add at least one of them")
    if defaults is not None:
        if "camera_id" in defaults:
            raise CameraConfigError(f"{source}: defaults.camera_id: camera ids belong under cameras, not defaults")
        # Validated once here so a bad default is reported at load time, not at the first unknown camera.
        _validate_camera(source, "defaults", {**defaults, "camera_id": "defaults"})
    validated: dict[str, CameraConfig] = {}
    for camera_id, body in cameras.items():
        path = f"cameras.{camera_id}"
        body = {} if body is None else body
        if not isinstance(body, dict):
            raise CameraConfigError(f"{source}: {path}: must be a mapping of camera fields")
        if "camera_id" in body and body["camera_id"] != camera_id:
            raise CameraConfigError(f"{source}: {path}.camera_id: differs from the key {camera_id!r}: drop it")
        merged = _merge(defaults or {}, {**body, "camera_id": str(camera_id)})
        validated[str(camera_id)] = _validate_camera(source, path, merged)
    logger.debug("loaded %d camera configs from %s (defaults: %s)", len(validated), source, defaults is not None)
    return CameraConfigs(source, validated, defaults)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key; every other value (lists included) in ``override`` replaces ``base``."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _validate_camera(source: str, path: str, data: dict[str, Any]) -> CameraConfig:
    try:
        return CameraConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{_field_path(path, error['loc'])}: {_message(error)}" for error in exc.errors())
        raise CameraConfigError(f"{source}: {problems}") from exc


def _message(error: Any) -> str:
    # Our own validators raise ValueError; pydantic prefixes those with "Value error, ".
    if error["type"] == "value_error":
        return str(error["ctx"]["error"])
    return str(error["msg"])


def _field_path(prefix: str, loc: tuple[int | str, ...]) -> str:
    path = prefix
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path
