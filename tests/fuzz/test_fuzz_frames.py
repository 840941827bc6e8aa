"""Fuzzing the frame decoder as the inference worker calls it: whatever a producer puts on ``frames`` (value and
headers), ``decode_frame`` returns a frame or raises BadFrame with a FrameProblem, never anything else, and never
decodes a picture larger than the pixel limit (so a small payload cannot make the worker allocate gigabytes)."""

from __future__ import annotations

from unittest import mock

import cv2
import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from schemas import FRAME, headers_dict
from stream_apps.inference.frames import (
    BadFrame,
    DecodedFrame,
    FrameLimits,
    FrameProblem,
    decode_frame,
    jpeg_dimensions,
)
from tests.fuzz.fuzz_strategies import (
    FUZZ,
    examples,
    images,
    jpeg_structures,
    jpegs,
    kafka_headers,
    mutated,
    other_images,
    strings,
)

LIMITS = st.builds(FrameLimits, max_bytes=st.sampled_from([512, 100_000, 100_000]),
                   max_pixels=st.sampled_from([64, 1024, 2500, 1_000_000, 1_000_000]),
                   max_age_ms=st.sampled_from([0, 0, 1000]))


@st.composite
def frame_values(draw: st.DrawFn) -> bytes | None:
    """A ``frames`` message value: a valid record (its declared size honest or not) around any image, that
    record mutated, random bytes, or a tombstone."""
    record = {
        "camera_id": draw(strings()), "frame_seq": draw(st.integers(-(2**63), 2**63 - 1)),
        "capture_ts_ms": draw(st.integers(-(2**63), 2**63 - 1) | st.integers(0, 3000)),
        "width": draw(st.integers(0, 64) | st.integers(0, 64) | st.integers(-(2**31), 2**31 - 1)),
        "height": draw(st.integers(0, 64) | st.integers(0, 64) | st.integers(-(2**31), 2**31 - 1)),
        "encoding": draw(st.sampled_from(["jpeg", "png", ""])), "image": draw(images()),
        "variant": draw(strings()), "experiment": draw(strings()),
    }
    value = FRAME.encode(record)
    return draw(st.sampled_from(["as-is"] * 6 + ["mutated", "mutated", "random", "none"]).flatmap(lambda kind: {
        "as-is": st.just(value), "mutated": mutated(value), "random": st.binary(max_size=512), "none": st.none(),
    }[kind]))


class _Decodes:
    """Records the size of every picture OpenCV decodes while active."""

    def __init__(self) -> None:
        self.pixels: list[int] = []
        self._imdecode = cv2.imdecode

    def __call__(self, buffer, flags):
        image = self._imdecode(buffer, flags)
        if image is not None:
            self.pixels.append(image.shape[0] * image.shape[1])
        return image


def _decode(value, pairs, limits, now_ms):
    """``decode_frame`` as the worker calls it; returns the frame or the BadFrame, and what OpenCV decoded."""
    decodes = _Decodes()
    with mock.patch.object(cv2, "imdecode", decodes):
        try:
            return decode_frame(value, headers_dict(pairs), limits, now_ms), decodes.pixels
        except BadFrame as exc:
            return exc, decodes.pixels


def _check(outcome, decoded_pixels, limits):
    assert all(pixels <= limits.max_pixels for pixels in decoded_pixels), \
        f"decoded {decoded_pixels} pixels, over the {limits.max_pixels}-pixel limit"
    event(outcome.problem.value if isinstance(outcome, BadFrame)
          else "ended" if outcome.ended else "stale" if outcome.stale else "decoded")
    if isinstance(outcome, BadFrame):
        assert isinstance(outcome.problem, FrameProblem)
        assert outcome.problem in {FrameProblem.UNDECODABLE_RECORD, FrameProblem.UNKNOWN_SCHEMA_VERSION,
                                FrameProblem.CORRUPT_IMAGE, FrameProblem.OVERSIZED_PAYLOAD,
                                FrameProblem.TOO_MANY_PIXELS}
        return
    assert isinstance(outcome, DecodedFrame)
    if outcome.image is not None:
        image = outcome.image
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert image.shape[:2] == (outcome.height, outcome.width)
        assert outcome.width * outcome.height <= limits.max_pixels


@pytest.mark.slow
@settings(FUZZ, max_examples=examples(400))
@given(value=frame_values(), pairs=kafka_headers(FRAME), limits=LIMITS,
       now_ms=st.none() | st.integers(-(2**63), 2**63 - 1) | st.integers(0, 5000))
def test_any_frame_message_decodes_or_is_a_classified_bad_frame(value, pairs, limits, now_ms):
    _check(*_decode(value, pairs, limits, now_ms), limits)


@pytest.mark.slow
@settings(FUZZ, max_examples=examples(300))
@given(image=images(), limits=LIMITS)
def test_any_image_in_a_valid_record_decodes_within_the_limit_or_is_a_classified_bad_frame(image, limits):
    value = FRAME.encode({"camera_id": "c", "frame_seq": 1, "capture_ts_ms": 1, "width": 1, "height": 1,
                          "image": image})
    _check(*_decode(value, FRAME.headers(), limits, None), limits)


def _largest_frame_header_anywhere(data: bytes) -> int:
    """The largest area any bytes FF Cn (n a frame header's marker) in ``data`` could declare: libjpeg's frame
    header is one of them, so decoding cannot allocate more, whatever the reader under test says."""
    areas = [int.from_bytes(data[at + 5:at + 7], "big") * int.from_bytes(data[at + 7:at + 9], "big")
             for at in range(len(data) - 1) if data[at] == 0xFF and 0xC0 <= data[at + 1] <= 0xCF]
    return max(areas, default=0)


def _sizes_match(data: bytes) -> None:
    declared = jpeg_dimensions(data)
    assert declared is None or all(0 <= side <= 0xFFFF for side in declared)
    if not 0 < _largest_frame_header_anywhere(data) <= 4 * 10**6:
        return  # nothing to decode, or too large to decode here
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    event(f"decoder: {'picture' if image is not None else 'nothing'}, header reader: {declared is not None}")
    if image is not None and data[:2] == b"\xff\xd8":  # an EXIF orientation may turn the picture: compare areas
        assert declared is not None, f"the decoder made {image.shape[1]}x{image.shape[0]}, the header reader nothing"
        assert image.shape[0] * image.shape[1] == declared[0] * declared[1], \
            f"header read {declared}, decoder made {image.shape[1]}x{image.shape[0]}"


@pytest.mark.slow
@settings(FUZZ, max_examples=examples(500))
@given(data=st.one_of(jpegs(), jpegs().flatmap(mutated), jpeg_structures(), jpeg_structures().flatmap(mutated),
                      other_images(), st.binary(max_size=64).map(lambda tail: b"\xff\xd8" + tail)))
def test_the_jpeg_header_reader_never_raises_and_agrees_with_the_decoder(data):
    """The size ``jpeg_dimensions`` reads is the size libjpeg (through OpenCV) decodes, whenever both succeed."""
    _sizes_match(data)


# Inputs the fuzzing found, shrunk by hand to a 32x24 JPEG, and what they let through before the fixes.

def _jpeg(width: int = 32, height: int = 24) -> bytes:
    return cv2.imencode(".jpg", np.zeros((height, width, 3), np.uint8))[1].tobytes()


def _sof(jpeg: bytes) -> int:
    return jpeg.index(b"\xff\xc0")


def _stuffed_zero_after_soi() -> bytes:
    """Found: FF 00 right after SOI. libjpeg drops a stuffed zero; the header reader took it for a segment whose
    length (the next marker's bytes, FF E0) jumped past the frame header, and refused a good picture."""
    return b"\xff\xd8\xff\x00" + _jpeg()[2:]


def _app0_of_length_zero() -> bytes:
    """Found: an APP0 segment whose length is 0. libjpeg skips no data and reads on; the header reader gave up."""
    jpeg = _jpeg()
    return jpeg[:4] + b"\x00\x00" + jpeg[6:]


def _stuffed_zero_onto_the_height(height: int = 0xFFC0) -> bytes:
    """What a stuffed zero let through: FF 00 00 07 before a frame header declaring ``height`` 0xFFC0. Taking
    FF 00 for a segment, the reader jumped 9 bytes onto the height, whose bytes read as another frame header
    (FF C0) of 2x290 pixels; libjpeg reads the real one, 32x65472."""
    jpeg = _jpeg()
    sof = _sof(jpeg)
    patched = jpeg[:sof + 5] + height.to_bytes(2, "big") + jpeg[sof + 7:]
    return patched[:sof] + b"\xff\x00\x00\x07" + patched[sof:]


def _stuffed_zero_over_the_frame_header() -> bytes:
    """What a stuffed zero let through: FF 00 with a 'length' jumping over the real frame header (20000x20000)
    to a small one that libjpeg sees inside an APP1 segment: 1.2 GB decoded from 700 bytes."""
    jpeg = _jpeg()
    sof = _sof(jpeg)
    small = jpeg[sof:sof + 2 + int.from_bytes(jpeg[sof + 2:sof + 4], "big")]
    huge = small[:5] + (20000).to_bytes(2, "big") + (20000).to_bytes(2, "big") + small[9:]
    return (b"\xff\xd8\xff\x00" + (len(huge) + 6).to_bytes(2, "big") + huge
            + b"\xff\xe1" + (len(small) + 2).to_bytes(2, "big") + small + jpeg[2:sof] + jpeg[sof + len(small):])


@pytest.mark.parametrize(("data", "size"), [
    (_stuffed_zero_after_soi(), (32, 24)),
    (_app0_of_length_zero(), (32, 24)),
    (_stuffed_zero_onto_the_height(), (32, 0xFFC0)),
    (_stuffed_zero_over_the_frame_header(), (20000, 20000)),
], ids=["stuffed-zero-after-soi", "app0-of-length-zero", "stuffed-zero-onto-height", "stuffed-zero-over-sof"])
def test_the_header_reader_skips_what_libjpeg_skips(data, size):
    assert jpeg_dimensions(data) == size


def test_a_good_picture_behind_a_stuffed_zero_or_an_empty_app0_decodes():
    limits = FrameLimits(max_bytes=100_000, max_pixels=2500)
    for image in (_stuffed_zero_after_soi(), _app0_of_length_zero()):
        value = FRAME.encode({"camera_id": "c", "frame_seq": 1, "capture_ts_ms": 1, "width": 32, "height": 24,
                              "image": image})
        outcome, _ = _decode(value, FRAME.headers(), limits, None)
        assert isinstance(outcome, DecodedFrame) and outcome.image.shape == (24, 32, 3)


def _png(width: int, height: int) -> bytes:
    return cv2.imencode(".png", np.zeros((height, width, 3), np.uint8))[1].tobytes()


@pytest.mark.parametrize("image", [
    _stuffed_zero_onto_the_height(),
    _stuffed_zero_over_the_frame_header(),
    _png(100, 100),  # found: any PNG, BMP, ... went to OpenCV unmeasured; a 390 KB PNG inflates to 20000x20000
    cv2.imencode(".bmp", np.zeros((100, 100, 3), np.uint8))[1].tobytes(),
    b"P6\n100 100\n255\n" + bytes(30_000),
], ids=["stuffed-zero-onto-height", "stuffed-zero-over-sof", "png", "bmp", "ppm"])
def test_pictures_over_the_limit_are_refused_before_decoding(image):
    limits = FrameLimits(max_bytes=100_000, max_pixels=2500)
    value = FRAME.encode({"camera_id": "c", "frame_seq": 1, "capture_ts_ms": 1, "width": 1, "height": 1,
                          "image": image})
    outcome, decoded = _decode(value, FRAME.headers(), limits, None)
    assert isinstance(outcome, BadFrame) and decoded == []
    assert outcome.problem in (FrameProblem.CORRUPT_IMAGE, FrameProblem.TOO_MANY_PIXELS)
