"""Frame messages are validated and decoded, or refused with the error code that says why."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from schemas import FRAME
from stream_apps.inference.frames import BadFrame, FrameErrorCode, FrameLimits, decode_frame

LIMITS = FrameLimits(max_bytes=100_000, max_pixels=1_000_000)


def _jpeg(width=32, height=24) -> bytes:
    return cv2.imencode(".jpg", np.zeros((height, width, 3), np.uint8))[1].tobytes()


def _message(image: bytes, width=32, height=24, capture_ts_ms=1_000) -> bytes:
    return FRAME.encode({"camera_id": "c", "frame_seq": 3, "capture_ts_ms": capture_ts_ms, "width": width,
                         "height": height, "image": image})


def _code(payload, headers=None, limits=LIMITS) -> FrameErrorCode:
    with pytest.raises(BadFrame) as caught:
        decode_frame(payload, dict(FRAME.headers()) if headers is None else headers, limits)
    return caught.value.code


def test_a_good_frame_decodes_to_its_image():
    frame = decode_frame(_message(_jpeg()), dict(FRAME.headers()), LIMITS)
    assert frame.image.shape == (24, 32, 3)
    assert (frame.camera_id, frame.frame_seq) == ("c", 3)


def test_garbage_is_undecodable_avro():
    assert _code(b"\x00\x01garbage") == FrameErrorCode.UNDECODABLE_AVRO


def test_a_tombstone_is_undecodable_avro():
    assert _code(None) == FrameErrorCode.UNDECODABLE_AVRO


def test_missing_schema_headers_are_an_unknown_schema_version():
    assert _code(_message(_jpeg()), headers={}) == FrameErrorCode.UNKNOWN_SCHEMA_VERSION


def test_a_corrupt_jpeg_is_a_corrupt_image():
    assert _code(_message(b"\xff\xd8\xff\xe0 not really")) == FrameErrorCode.CORRUPT_IMAGE


def test_an_oversized_payload_is_refused_before_decoding():
    assert _code(_message(b"\x00" * 200_000)) == FrameErrorCode.OVERSIZED_PAYLOAD


def test_declared_dimensions_above_the_pixel_limit_are_refused():
    assert _code(_message(_jpeg(), width=5000, height=5000)) == FrameErrorCode.TOO_MANY_PIXELS


def test_a_decoded_image_above_the_pixel_limit_is_refused_even_if_declared_small():
    assert _code(_message(_jpeg(2000, 1000)), limits=FrameLimits(10**7, 1_000_000)) == FrameErrorCode.TOO_MANY_PIXELS


def test_a_stale_frame_comes_back_without_its_image():
    limits = FrameLimits(100_000, 1_000_000, max_age_ms=500)
    frame = decode_frame(_message(_jpeg(), capture_ts_ms=1_000), dict(FRAME.headers()), limits, now_ms=2_000)
    assert frame.stale and frame.image is None and (frame.width, frame.height) == (32, 24)


def test_a_fresh_frame_is_decoded_when_a_max_age_is_set():
    limits = FrameLimits(100_000, 1_000_000, max_age_ms=5_000)
    frame = decode_frame(_message(_jpeg(), capture_ts_ms=1_000), dict(FRAME.headers()), limits, now_ms=2_000)
    assert not frame.stale
