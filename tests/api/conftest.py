"""Fixtures of the HTTP API tests: real vtest frames as the JPEG files clients send, and hand-made bad images.
The running server (``api_server``) and the stack come from tests/services.py."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from producers.encoding import encode_jpeg
from producers.sources import sample_frames
from tests.pipeline import footage_path


@pytest.fixture(scope="session")
def vtest_frames() -> list[np.ndarray]:
    """Six BGR frames spread over vtest.avi."""
    return sample_frames(footage_path(), 6)


@pytest.fixture(scope="session")
def vtest_jpegs(vtest_frames: list[np.ndarray]) -> list[bytes]:
    """The same frames as ingest encodes them (JPEG quality 90)."""
    return [encode_jpeg(frame) for frame in vtest_frames]


def jpeg_declaring(jpeg: bytes, width: int, height: int) -> bytes:
    """``jpeg`` with its frame header (SOF0) rewritten to declare ``width`` x ``height``: a decompression bomb
    whose file stays small."""
    sof = jpeg.index(b"\xff\xc0")
    return jpeg[:sof + 5] + struct.pack(">HH", height, width) + jpeg[sof + 9:]


def png_declaring(width: int, height: int) -> bytes:
    """A small PNG whose IHDR declares ``width`` x ``height`` pixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + \
        chunk(b"IEND", b"")
