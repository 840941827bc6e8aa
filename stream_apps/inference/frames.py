"""Validation and decoding of frame messages. Pure: no Kafka clients, so it is unit-testable alone.

Every way a frame can be bad maps to one error code; the worker sends such frames to the dead-letter topic.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import cv2
import numpy as np

from schemas import FRAME, UndecodablePayload, UnknownSchemaVersion


class FrameErrorCode(str, Enum):
    UNDECODABLE_AVRO = "INF_001"
    UNKNOWN_SCHEMA_VERSION = "INF_002"
    CORRUPT_IMAGE = "INF_003"
    OVERSIZED_PAYLOAD = "INF_004"
    TOO_MANY_PIXELS = "INF_005"
    UNKNOWN_VARIANT = "INF_006"


class BadFrame(Exception):
    def __init__(self, code: FrameErrorCode, reason: str) -> None:
        super().__init__(f"{code.value}: {reason}")
        self.code = code
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
    """
    if payload is None:
        raise BadFrame(FrameErrorCode.UNDECODABLE_AVRO, "message has no value (tombstone)")
    if len(payload) > limits.max_bytes:
        raise BadFrame(FrameErrorCode.OVERSIZED_PAYLOAD,
                       f"payload of {len(payload)} bytes exceeds the {limits.max_bytes}-byte limit")
    try:
        record = FRAME.decode(payload, headers)
    except UnknownSchemaVersion as exc:
        raise BadFrame(FrameErrorCode.UNKNOWN_SCHEMA_VERSION, str(exc)) from exc
    except UndecodablePayload as exc:
        raise BadFrame(FrameErrorCode.UNDECODABLE_AVRO, str(exc)) from exc
    declared = record["width"] * record["height"]
    if declared > limits.max_pixels:
        raise BadFrame(FrameErrorCode.TOO_MANY_PIXELS,
                       f"frame of {record['width']}x{record['height']} exceeds the {limits.max_pixels}-pixel limit")
    if limits.max_age_ms and now_ms is not None and now_ms - record["capture_ts_ms"] > limits.max_age_ms:
        return _frame(record, record["width"], record["height"], None)
    jpeg = np.frombuffer(record["image"], dtype=np.uint8)
    image = cv2.imdecode(jpeg, cv2.IMREAD_COLOR) if jpeg.size else None
    if image is None:
        raise BadFrame(FrameErrorCode.CORRUPT_IMAGE,
                       f"image of {jpeg.size} bytes is not a decodable {record['encoding']} picture")
    height, width = image.shape[:2]
    if width * height > limits.max_pixels:
        raise BadFrame(FrameErrorCode.TOO_MANY_PIXELS,
                       f"decoded frame of {width}x{height} exceeds the {limits.max_pixels}-pixel limit")
    return _frame(record, width, height, image)


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
