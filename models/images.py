"""Measured image decoding: an encoded picture's size is read from its header before anything is decoded.

Pure (no I/O), shared by the stream workers' frame validation and the HTTP API. Only formats whose size can be read
without decoding are accepted: JPEG (frame header, SOF0..SOF15) and, where the caller allows it, PNG (IHDR). OpenCV
would decode anything else unmeasured, and a small compressed file can declare gigabytes of pixels.
"""

from __future__ import annotations

import cv2
import numpy as np

from foundation.errors import CamcountError


class ImageRejected(CamcountError):
    """An encoded image that will not be decoded: ``detail`` says why (the values match the stream workers'
    dead-letter details)."""

    code = "INF_002"
    detail = "corrupt-image"


class CorruptImage(ImageRejected):
    """Not a decodable JPEG (or PNG, where allowed)."""


class TooManyPixels(ImageRejected):
    """The image's header (or the decoded image) has more pixels than the limit."""

    code = "INF_001"
    detail = "too-many-pixels"


SOI = b"\xff\xd8"
EOI = b"\xff\xd9"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_NOT_SOF = frozenset({0xC4, 0xC8, 0xCC})
"""DHT, JPG and DAC: markers in the SOF0..SOF15 range that are not frame headers."""


def jpeg_dimensions(data: bytes) -> tuple[int, int] | None:
    """(width, height) a JPEG's frame header (SOF0..SOF15) declares, read without decoding; None when ``data``
    is not a JPEG, or its markers end, break off or run out of bounds before a frame header. Bytes between
    segments that are not a marker are skipped, as libjpeg (OpenCV's decoder) skips them.

    Pure, and reads only SOI and the segment headers before the frame header, so a picture that claims
    billions of pixels is measured without allocating them.
    """
    if data[:2] != SOI:
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


def png_dimensions(data: bytes) -> tuple[int, int] | None:
    """(width, height) a PNG's IHDR chunk declares, or None when ``data`` is not a PNG starting with one.

    libpng allocates exactly what IHDR declares, whatever the compressed data inflates to, so this bounds decoding.
    """
    if data[:8] != PNG_SIGNATURE or len(data) < 24 or data[12:16] != b"IHDR":
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def decode_image(data: bytes, max_pixels: int, allow_png: bool = False, require_complete: bool = False
                 ) -> np.ndarray:
    """BGR uint8 (H, W, 3) picture of an encoded JPEG (or PNG when ``allow_png``), measured by its header first.

    Raises TooManyPixels when the header (or the decoded picture) has more than ``max_pixels`` pixels, and
    CorruptImage for anything that is not a decodable picture of an accepted format; never anything else.
    ``require_complete`` also refuses a JPEG that does not end with its EOI marker (trailing NUL or whitespace
    padding aside): libjpeg decodes a truncated file without error, filling what is missing with grey.
    """
    formats = "a JPEG or PNG, the only formats" if allow_png else "a JPEG, the only format"
    size = jpeg_dimensions(data)
    if size is None and data[:2] == SOI:
        raise CorruptImage("JPEG without a readable frame header (SOF) before its data")
    if size is None and allow_png:
        size = png_dimensions(data)
        if size is None and data[:8] == PNG_SIGNATURE:
            raise CorruptImage("PNG without a readable IHDR chunk at its start")
    if size is None:
        raise CorruptImage(f"image of {len(data)} bytes is not {formats} measured before decoding")
    if require_complete and data[:2] == SOI and not data.rstrip(b"\x00\r\n\t ").endswith(EOI):
        raise CorruptImage(f"JPEG of {len(data)} bytes is truncated: it does not end with an EOI marker")
    if size[0] * size[1] > max_pixels:
        raise TooManyPixels(f"{'JPEG' if data[:2] == SOI else 'PNG'} header declares {size[0]}x{size[1]}, more "
                            f"than the {max_pixels}-pixel limit")
    encoded = np.frombuffer(data, dtype=np.uint8)
    try:
        image = cv2.imdecode(encoded, cv2.IMREAD_COLOR) if encoded.size else None
    except Exception as exc:  # cv2.error, e.g. a size over OpenCV's own limit in a header we could not read
        raise CorruptImage(f"image of {encoded.size} bytes failed to decode: {str(exc).strip()}") from exc
    if image is None:
        kind = "JPEG" if data[:2] == SOI else "PNG"
        raise CorruptImage(f"image of {encoded.size} bytes is not a decodable {kind} picture")
    height, width = image.shape[:2]
    if width * height > max_pixels:
        raise TooManyPixels(f"decoded frame of {width}x{height} exceeds the {max_pixels}-pixel limit")
    return image
