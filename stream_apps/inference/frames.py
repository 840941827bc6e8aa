"""Validation and decoding of frame messages. Pure: no Kafka clients, so it is unit-testable alone.

Every way a frame can be bad maps to one error code; the worker sends such frames to the dead-letter topic.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import cv2
import numpy as np

from foundation.errors import CamcountError
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
    """BGR uint8 (H, W, 3); None when the frame is stale and must be skipped rather than inferred."""

    @property
    def stale(self) -> bool:
        return self.image is None


def decode_frame(payload: bytes | None, headers: dict[str, bytes], limits: FrameLimits,
                 now_ms: int | None = None) -> DecodedFrame:
    """Decode one ``frames`` message or raise BadFrame with the code that says why not.

    A frame older than ``limits.max_age_ms`` at ``now_ms`` comes back without its image (not even decoded).
    A JPEG is measured by its frame header first, so none larger than ``limits.max_pixels`` is ever decoded, and
    any other format is refused undecoded; a decoder failure is a BadFrame (CORRUPT_IMAGE) too, so no frame can make
    this raise anything else.
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
    if limits.max_age_ms and now_ms is not None and now_ms - record["capture_ts_ms"] > limits.max_age_ms:
        return _frame(record, record["width"], record["height"], None)
    header = jpeg_dimensions(record["image"])
    if header is None and record["image"][:2] == _SOI:
        raise BadFrame(FrameProblem.CORRUPT_IMAGE, "JPEG without a readable frame header (SOF) before its data")
    if header is None:  # OpenCV would decode a PNG, BMP, ... of any size, unmeasured: a small PNG inflates to GBs
        raise BadFrame(FrameProblem.CORRUPT_IMAGE,
                       f"image of {len(record['image'])} bytes is not a JPEG, the only format measured before decoding")
    if header[0] * header[1] > limits.max_pixels:
        raise BadFrame(FrameProblem.TOO_MANY_PIXELS,
                       f"JPEG header declares {header[0]}x{header[1]}, more than the {limits.max_pixels}-pixel limit")
    jpeg = np.frombuffer(record["image"], dtype=np.uint8)
    try:
        image = cv2.imdecode(jpeg, cv2.IMREAD_COLOR) if jpeg.size else None
    except Exception as exc:  # cv2.error, e.g. a size over OpenCV's own limit in a header we could not read
        raise BadFrame(FrameProblem.CORRUPT_IMAGE,
                       f"image of {jpeg.size} bytes failed to decode: {str(exc).strip()}") from exc
    if image is None:
        raise BadFrame(FrameProblem.CORRUPT_IMAGE,
                       f"image of {jpeg.size} bytes is not a decodable {record['encoding']} picture")
    height, width = image.shape[:2]
    if width * height > limits.max_pixels:
        raise BadFrame(FrameProblem.TOO_MANY_PIXELS,
                       f"decoded frame of {width}x{height} exceeds the {limits.max_pixels}-pixel limit")
    return _frame(record, width, height, image)


_SOI = b"\xff\xd8"
_NOT_SOF = frozenset({0xC4, 0xC8, 0xCC})
"""DHT, JPG and DAC: markers in the SOF0..SOF15 range that are not frame headers."""


def jpeg_dimensions(data: bytes) -> tuple[int, int] | None:
    """(width, height) a JPEG's frame header (SOF0..SOF15) declares, read without decoding; None when ``data``
    is not a JPEG, or its markers end, break off or run out of bounds before a frame header. Bytes between
    segments that are not a marker are skipped, as libjpeg (OpenCV's decoder) skips them.

    Pure, and reads only SOI and the segment headers before the frame header, so a picture that claims
    billions of pixels is measured without allocating them.
    """
    if data[:2] != _SOI:
        return None
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:  # extraneous bytes between segments: libjpeg skips them, and so must we
            position += 1
            continue
        marker = data[position + 1]
        if marker == 0xFF:  # a fill byte before the marker
            position += 1
            continue
        # TEM, RSTn: markers without a segment; FF 00, a stuffed zero, is no marker at all and libjpeg drops it
        # (read as a segment, its "length" could jump over the frame header libjpeg reads)
        if marker in (0x00, 0x01) or 0xD0 <= marker <= 0xD7:
            position += 2
            continue
        if marker in (0xD9, 0xDA):  # EOI, SOS: the image ends or its data starts, and no frame header came
            return None
        length = int.from_bytes(data[position + 2:position + 4], "big")  # counts itself, not the marker
        if 0xC0 <= marker <= 0xCF and marker not in _NOT_SOF:
            header = data[position + 4:position + 9]  # sample precision, height, width
            if length < 8 or len(header) < 5:
                return None
            return int.from_bytes(header[3:5], "big"), int.from_bytes(header[1:3], "big")
        position += 2 + max(length, 2)  # a length under 2: libjpeg skips no data and reads on after it
    return None


def _frame(record: dict, width: int, height: int, image: np.ndarray | None) -> DecodedFrame:
    return DecodedFrame(
        camera_id=record["camera_id"],
        frame_seq=record["frame_seq"],
        capture_ts_ms=record["capture_ts_ms"],
        variant=record["variant"],
        experiment=record["experiment"],
        width=width,
        height=height,
        image=image,
    )
