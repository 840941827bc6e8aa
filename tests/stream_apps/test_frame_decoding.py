"""Frame messages are validated and decoded, or refused with the error code that says why."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from schemas import FRAME
from stream_apps.inference.frames import BadFrame, FrameLimits, FrameProblem, decode_frame, jpeg_dimensions

LIMITS = FrameLimits(max_bytes=100_000, max_pixels=1_000_000)


def _jpeg(width=32, height=24) -> bytes:
    return cv2.imencode(".jpg", np.zeros((height, width, 3), np.uint8))[1].tobytes()


def _message(image: bytes, width=32, height=24, capture_ts_ms=1_000) -> bytes:
    return FRAME.encode({"camera_id": "c", "frame_seq": 3, "capture_ts_ms": capture_ts_ms, "width": width,
                         "height": height, "image": image})


def _code(payload, headers=None, limits=LIMITS) -> FrameProblem:
    with pytest.raises(BadFrame) as caught:
        decode_frame(payload, dict(FRAME.headers()) if headers is None else headers, limits)
    return caught.value.problem


def test_a_good_frame_decodes_to_its_image():
    frame = decode_frame(_message(_jpeg()), dict(FRAME.headers()), LIMITS)
    assert frame.image.shape == (24, 32, 3)
    assert (frame.camera_id, frame.frame_seq) == ("c", 3)


def test_garbage_is_undecodable_avro():
    assert _code(b"\x00\x01garbage") == FrameProblem.UNDECODABLE_RECORD


def test_a_tombstone_is_undecodable_avro():
    assert _code(None) == FrameProblem.UNDECODABLE_RECORD


def test_missing_schema_headers_are_an_unknown_schema_version():
    assert _code(_message(_jpeg()), headers={}) == FrameProblem.UNKNOWN_SCHEMA_VERSION


def test_a_corrupt_jpeg_is_a_corrupt_image():
    assert _code(_message(b"\xff\xd8\xff\xe0 not really")) == FrameProblem.CORRUPT_IMAGE


def test_an_oversized_payload_is_refused_before_decoding():
    assert _code(_message(b"\x00" * 200_000)) == FrameProblem.OVERSIZED_PAYLOAD


def test_declared_dimensions_above_the_pixel_limit_are_refused():
    assert _code(_message(_jpeg(), width=5000, height=5000)) == FrameProblem.TOO_MANY_PIXELS


def test_a_decoded_image_above_the_pixel_limit_is_refused_even_if_declared_small():
    assert _code(_message(_jpeg(2000, 1000)), limits=FrameLimits(10**7, 1_000_000)) == FrameProblem.TOO_MANY_PIXELS


def test_a_stale_frame_comes_back_without_its_image():
    limits = FrameLimits(100_000, 1_000_000, max_age_ms=500)
    frame = decode_frame(_message(_jpeg(), capture_ts_ms=1_000), dict(FRAME.headers()), limits, now_ms=2_000)
    assert frame.stale and frame.image is None and (frame.width, frame.height) == (32, 24)


def test_an_end_of_stream_marker_comes_back_ended_with_its_last_frame_and_no_image():
    marker = FRAME.encode({"camera_id": "c", "frame_seq": 3, "capture_ts_ms": 1_000, "width": 32, "height": 24,
                           "image": b"", "end_of_stream": True})
    frame = decode_frame(marker, dict(FRAME.headers()), FrameLimits(100_000, 1_000_000, max_age_ms=500), now_ms=9_000)
    assert frame.ended and not frame.stale and frame.image is None
    assert (frame.camera_id, frame.frame_seq, frame.width, frame.height) == ("c", 3, 32, 24)


def test_a_fresh_frame_is_decoded_when_a_max_age_is_set():
    limits = FrameLimits(100_000, 1_000_000, max_age_ms=5_000)
    frame = decode_frame(_message(_jpeg(), capture_ts_ms=1_000), dict(FRAME.headers()), limits, now_ms=2_000)
    assert not frame.stale


def _jpeg_declaring(width: int, height: int) -> bytes:
    """A real small JPEG whose frame header (SOF0) is patched to claim ``width`` x ``height``."""
    jpeg = bytearray(_jpeg())
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5:sof + 7] = height.to_bytes(2, "big")
    jpeg[sof + 7:sof + 9] = width.to_bytes(2, "big")
    return bytes(jpeg)


def test_the_jpeg_header_gives_the_declared_size_without_decoding():
    assert jpeg_dimensions(_jpeg(32, 24)) == (32, 24)
    assert jpeg_dimensions(_jpeg_declaring(65000, 40000)) == (65000, 40000)


def test_a_jpeg_header_above_the_pixel_limit_is_refused_without_decoding():
    started = time.monotonic()
    assert _code(_message(_jpeg_declaring(20000, 20000))) == FrameProblem.TOO_MANY_PIXELS
    assert time.monotonic() - started < 1.0  # decoding it would allocate 1.2 GB and take seconds


def test_a_jpeg_header_above_opencvs_own_limit_is_refused_not_raised():
    assert _code(_message(_jpeg_declaring(65000, 65000))) == FrameProblem.TOO_MANY_PIXELS


def test_a_decoder_error_is_a_corrupt_image():
    limits = FrameLimits(max_bytes=100_000, max_pixels=2**32)  # lets the header through to OpenCV, which refuses it
    assert _code(_message(_jpeg_declaring(65000, 65000)), limits=limits) == FrameProblem.CORRUPT_IMAGE


def _with_junk_before_the_frame_header(jpeg: bytes) -> bytes:
    sof = jpeg.index(b"\xff\xc0")
    return jpeg[:sof] + b"\x00\x17" + jpeg[sof:]


def test_junk_bytes_before_the_frame_header_do_not_hide_its_size():
    assert jpeg_dimensions(_with_junk_before_the_frame_header(_jpeg_declaring(8000, 8000))) == (8000, 8000)
    assert _code(_message(_with_junk_before_the_frame_header(_jpeg_declaring(8000, 8000)))) == \
        FrameProblem.TOO_MANY_PIXELS


def test_a_jpeg_without_a_frame_header_is_a_corrupt_image():
    jpeg = _jpeg()
    sof = jpeg.index(b"\xff\xc0")
    length = int.from_bytes(jpeg[sof + 2:sof + 4], "big")
    assert _code(_message(jpeg[:sof] + jpeg[sof + 2 + length:])) == FrameProblem.CORRUPT_IMAGE
