"""Frame sources: a video file, an RTSP/HTTP stream or a folder of images, read with OpenCV.

Pure: no Kafka here, so offline analysis reuses the same readers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")


class SourceError(Exception):
    """A frame source cannot be opened or read."""


@dataclass(frozen=True)
class SourceFrame:
    index: int
    """0-based decode order within one pass over the source."""
    image: np.ndarray
    """BGR uint8, as OpenCV decodes it."""
    offset_ms: float | None
    """Position on the source's own timeline (files, folders); None for live streams."""


class FrameSource:
    """Iterates frames of one source. ``native_fps`` is the source's own rate where it has one."""

    def __init__(self, source: str, folder_fps: float = 1.0) -> None:
        self.source = source
        self.is_live = source.lower().startswith(STREAM_SCHEMES)
        self._folder_fps = folder_fps
        path = Path(source)
        if self.is_live:
            self._images: list[Path] | None = None
        elif path.is_dir():
            self._images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self._images:
                raise SourceError(f"image folder {source} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        elif path.is_file():
            self._images = None
        else:
            raise SourceError(
                f"video source not found: {source} (give a video file, an image folder or an rtsp/http URL)")
        self.native_fps = self._probe_fps()

    def _probe_fps(self) -> float | None:
        if self._images is not None:
            return self._folder_fps
        capture = self._open_capture()
        try:
            fps = capture.get(cv2.CAP_PROP_FPS)
        finally:
            capture.release()
        return fps if fps and fps > 0 and not np.isnan(fps) else None

    def _open_capture(self) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(self.source)
        if not capture.isOpened():
            raise SourceError(f"OpenCV cannot open {self.source}: not a readable video or stream")
        return capture

    def frame_count(self) -> int | None:
        """Frames in one pass, where the source knows (files, folders); None for live streams."""
        if self._images is not None:
            return len(self._images)
        if self.is_live:
            return None
        capture = self._open_capture()
        try:
            count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        finally:
            capture.release()
        return count if count > 0 else None

    def frames(self) -> Iterator[SourceFrame]:
        """One pass over the source. Unreadable images in a folder are logged and skipped."""
        if self._images is not None:
            yield from self._folder_frames()
            return
        capture = self._open_capture()
        try:
            index = 0
            while True:
                ok, image = capture.read()
                if not ok:
                    if self.is_live:
                        raise SourceError(f"stream {self.source} stopped delivering frames")
                    return
                offset = None if self.is_live else index * 1000.0 / (self.native_fps or 25.0)
                yield SourceFrame(index, image, offset)
                index += 1
        finally:
            capture.release()

    def _folder_frames(self) -> Iterator[SourceFrame]:
        assert self._images is not None
        index = 0
        for path in self._images:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                log.warning("skipping unreadable image %s", path)
                continue
            yield SourceFrame(index, image, index * 1000.0 / self._folder_fps)
            index += 1


class Pacer:
    """Sleeps so that successive ``wait()`` calls happen at ``fps`` per second (0 = no pacing)."""

    def __init__(self, fps: float) -> None:
        self._period = 1.0 / fps if fps > 0 else 0.0
        self._next = time.monotonic()

    def wait(self) -> None:
        if not self._period:
            return
        self._next += self._period
        delay = self._next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif delay < -1.0:  # fell far behind (slow source): don't burst to catch up
            self._next = time.monotonic()
