"""How ingestors encode frames, stated once: offline analysis and benchmarks apply the same encoding, so a
video gives the same counts offline as through Kafka."""

from __future__ import annotations

import cv2
import numpy as np

from foundation.errors import CamcountError

JPEG_QUALITY = 90


class FrameEncodingError(CamcountError, RuntimeError):
    """OpenCV could not JPEG-encode an image (an empty or malformed array)."""

    code = "INF_002"
    detail = "encode-failed"


def encode_jpeg(image: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise FrameEncodingError(f"OpenCV failed to JPEG-encode a {image.shape} frame")
    return jpeg.tobytes()


def jpeg_round_trip(image: np.ndarray, quality: int = JPEG_QUALITY) -> np.ndarray:
    """``image`` as a consumer of the frames topic sees it after ingest's encoding."""
    return cv2.imdecode(np.frombuffer(encode_jpeg(image, quality), np.uint8), cv2.IMREAD_COLOR)
