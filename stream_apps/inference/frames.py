"""Validation and decoding of frame messages. Pure: no Kafka clients, so it is unit-testable alone.

Every way a frame can be bad maps to one error code; the worker sends such frames to the dead-letter topic.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from foundation.errors import CamcountError
from models.images import ImageRejected, decode_image, jpeg_dimensions  # noqa: F401 - jpeg_dimensions: re-exported
from schemas import FRAME, UndecodablePayload, UnknownSchemaVersion


class FrameProblem(str, Enum):
    """Why a frame is dead-lettered: the value is the finer reason (``dlq-error-detail``), ``code`` the error code
    of the system's taxonomy (``dlq-error-code``, docs/errors.md)."""

    UNDECODABLE_RECORD = "undecodable-record"
    UNKNOWN_SCHEMA_VERSION = "unknown-schema-version"
    OVERSIZED_PAYLOAD = "oversized-payload"
    TOO_MANY_PIXELS = "too-many-pixels"
    UNKNOWN_VARIANT = "unknown-variant"
    CORRUPT_IMAGE = "corrupt-image"
    VARIANT_MODEL_UNAVAILABLE = "variant-model-unavailable"
    """The model of the frame's variant could not be loaded; see the reason."""
    EXPERIMENT_UNREADABLE = "experiment-unreadable"
    """The frame's experiment could not be read from the experiment store; see the reason."""

    @property
    def code(self) -> str:
        return _TAXONOMY[self]


_TAXONOMY = {
    FrameProblem.UNDECODABLE_RECORD: "INF_001", FrameProblem.UNKNOWN_SCHEMA_VERSION: "INF_001",
    FrameProblem.OVERSIZED_PAYLOAD: "INF_001", FrameProblem.TOO_MANY_PIXELS: "INF_001",
    FrameProblem.UNKNOWN_VARIANT: "INF_001",  # input validation failed
    FrameProblem.CORRUPT_IMAGE: "INF_002",  # preprocessing (decoding) failed
    FrameProblem.VARIANT_MODEL_UNAVAILABLE: "MODEL_002",  # model load failed
    FrameProblem.EXPERIMENT_UNREADABLE: "SYS_003",  # cache (the experiment store) failed
}


class BadFrame(CamcountError):
    """A frame the worker cannot use; its dead letter carries ``code`` and ``detail`` (see :class:`FrameProblem`)."""

    code = "INF_001"
    detail = "undecodable-record"

    def __init__(self, problem: FrameProblem, reason: str) -> None:
        super().__init__(f"{problem.code} {problem.value}: {reason}")
        self.problem = problem
        self.code = problem.code
        self.detail = problem.value
        self.reason = reason


@dataclass(frozen=True)
class FrameLimits:
    max_bytes: int
    max_pixels: int
    max_age_ms: int = 0
    """Frames captured longer ago than this are skipped, not inferred (0: never)."""


@dataclass(frozen=True)
class DecodedFrame:
    camera_id: str
    frame_seq: int
    capture_ts_ms: int
    variant: str
    experiment: str
    width: int
    height: int
    image: np.ndarray | None
    """BGR uint8 (H, W, 3); None when there is nothing to infer: the frame is stale, or this is the end marker."""
    ended: bool = False
    """Not a frame but the marker that the camera's source ended after frame ``frame_seq`` (its last)."""

    @property
    def stale(self) -> bool:
        """Too old to infer: to be skipped."""
        return self.image is None and not self.ended


def decode_frame(payload: bytes | None, headers: dict[str, bytes], limits: FrameLimits,
                 now_ms: int | None = None) -> DecodedFrame:
    """Decode one ``frames`` message or raise BadFrame with the code that says why not.

    A frame older than ``limits.max_age_ms`` at ``now_ms`` comes back without its image (not even decoded), and so
    does an end-of-stream marker, ``ended``, whatever its age.
    A JPEG is measured by its frame header first (``models.images.decode_image``), so none larger than
    ``limits.max_pixels`` is ever decoded, and any other format is refused undecoded; a decoder failure is a BadFrame
    (CORRUPT_IMAGE) too, so no frame can make this raise anything else.
    """
    if payload is None:
        raise BadFrame(FrameProblem.UNDECODABLE_RECORD, "message has no value (tombstone)")
    if len(payload) > limits.max_bytes:
        raise BadFrame(FrameProblem.OVERSIZED_PAYLOAD,
                       f"payload of {len(payload)} bytes exceeds the {limits.max_bytes}-byte limit")
    try:
        record = FRAME.decode(payload, headers)
    except UnknownSchemaVersion as exc:
        raise BadFrame(FrameProblem.UNKNOWN_SCHEMA_VERSION, str(exc)) from exc
    except UndecodablePayload as exc:
        raise BadFrame(FrameProblem.UNDECODABLE_RECORD, str(exc)) from exc
    declared = record["width"] * record["height"]
    if declared > limits.max_pixels:
        raise BadFrame(FrameProblem.TOO_MANY_PIXELS,
                       f"frame of {record['width']}x{record['height']} exceeds the {limits.max_pixels}-pixel limit")
    if record["end_of_stream"]:
        return _frame(record, record["width"], record["height"], None, ended=True)
    if limits.max_age_ms and now_ms is not None and now_ms - record["capture_ts_ms"] > limits.max_age_ms:
        return _frame(record, record["width"], record["height"], None)
    try:
        image = decode_image(record["image"], limits.max_pixels)
    except ImageRejected as exc:  # same details: corrupt-image (INF_002) or too-many-pixels (INF_001)
        raise BadFrame(FrameProblem(exc.detail), str(exc)) from exc
    height, width = image.shape[:2]
    return _frame(record, width, height, image)


def _frame(record: dict, width: int, height: int, image: np.ndarray | None, ended: bool = False) -> DecodedFrame:
    return DecodedFrame(
        camera_id=record["camera_id"],
        frame_seq=record["frame_seq"],
        capture_ts_ms=record["capture_ts_ms"],
        variant=record["variant"],
        experiment=record["experiment"],
        width=width,
        height=height,
        image=image,
        ended=ended,
    )
