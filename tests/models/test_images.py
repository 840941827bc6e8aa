"""Measured decoding: sizes are read from JPEG and PNG headers before any pixel is decoded."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from models.images import CorruptImage, TooManyPixels, decode_image, png_dimensions
from tests.api.conftest import jpeg_declaring, png_declaring


def _jpeg(width: int = 32, height: int = 24) -> bytes:
    return cv2.imencode(".jpg", np.full((height, width, 3), 128, np.uint8))[1].tobytes()


def _png(width: int = 32, height: int = 24) -> bytes:
    return cv2.imencode(".png", np.full((height, width, 3), 128, np.uint8))[1].tobytes()


def test_png_dimensions_come_from_ihdr() -> None:
    assert png_dimensions(_png(40, 30)) == (40, 30)
    assert png_dimensions(png_declaring(30000, 20000)) == (30000, 20000)
    assert png_dimensions(_jpeg()) is None


def test_a_png_decodes_only_where_allowed() -> None:
    assert decode_image(_png(40, 30), 10_000, allow_png=True).shape == (30, 40, 3)
    with pytest.raises(CorruptImage):
        decode_image(_png(), 10_000)


@pytest.mark.parametrize("bomb", [jpeg_declaring(_jpeg(), 30000, 30000), png_declaring(30000, 30000)])
def test_a_header_declaring_too_many_pixels_is_refused_before_decoding(bomb: bytes) -> None:
    with pytest.raises(TooManyPixels) as refused:
        decode_image(bomb, 3840 * 2160, allow_png=True)

    assert "30000x30000" in str(refused.value) and refused.value.code == "INF_001"


def test_a_truncated_jpeg_is_refused_and_said_to_be_truncated_when_completeness_is_required() -> None:
    noisy = np.random.default_rng(7).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    jpeg = cv2.imencode(".jpg", noisy)[1].tobytes()
    truncated = jpeg[: len(jpeg) * 2 // 3]

    with pytest.raises(CorruptImage, match="truncated"):
        decode_image(truncated, 100_000, require_complete=True)
    with pytest.raises(CorruptImage):
        decode_image(truncated, 100_000)
    assert decode_image(jpeg + b"\x00\x00", 100_000, require_complete=True).shape == (96, 128, 3)
