"""Frame sources: a video file, an RTSP/HTTP stream or a folder of images, read with OpenCV.

Pure: no Kafka here, so offline analysis reuses the same readers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from foundation.errors import CamcountError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")


class SourceError(CamcountError):
    """A frame source cannot be opened or read."""

    code = "INF_001"
    detail = "unreadable-source"


@dataclass(frozen=True)
class SourceFrame:
    index: int
    """0-based decode order within one pass over the source."""
    image: np.ndarray
    """BGR uint8, as OpenCV decodes it."""
    offset_ms: float | None
    """Position on the source's own timeline (files, folders); None for live streams."""
    grabbed_ms: float | None = None
    """Wall-clock time (ms) the frame was grabbed from a live stream; None for files and folders."""


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
        """One pass over a file or folder, every frame; the caller paces them. Unreadable images in a folder are
        logged and skipped. Raises SourceError when a pass yields no frame at all (a truncated file, a folder of
        unreadable images), so a replay never ends "successfully" having published nothing. A live stream is read
        as by :meth:`live_frames` keeping every frame."""
        if self.is_live:
            yield from self.live_frames(keep=lambda _grabbed_at: True)
            return
        if self._images is not None:
            yield from self._folder_frames()
            return
        capture = self._open_capture()
        try:
            index = 0
            while True:
                ok, image = capture.read()
                if not ok:
                    break
                yield SourceFrame(index, image, index * 1000.0 / (self.native_fps or 25.0))
                index += 1
        finally:
            capture.release()
        if index == 0:
            raise SourceError(f"video file {self.source} has no frame OpenCV can decode (empty or truncated?)")

    def live_frames(self, keep: Callable[[float], bool], stop: threading.Event | None = None) -> Iterator[SourceFrame]:
        """A live stream's frames: grabbed continuously, at the camera's rate, so none queue up and go stale in the
        camera's or FFmpeg's buffers; only those ``keep`` accepts (it gets each grab's ``time.monotonic()``) are
        decoded and yielded, stamped with their grab time. Ends when ``stop`` is set; raises SourceError when
        the stream stops delivering frames."""
        capture = self._open_capture()
        try:
            index = 0
            while stop is None or not stop.is_set():
                ok = capture.grab()
                grabbed_at, grabbed_ms = time.monotonic(), time.time() * 1000.0
                if ok and not keep(grabbed_at):
                    continue
                if ok:
                    ok, image = capture.retrieve()
                if not ok:
                    raise SourceError(f"stream {self.source} stopped delivering frames")
                yield SourceFrame(index, image, None, grabbed_ms)
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
        if index == 0:
            raise SourceError(f"image folder {self.source}: none of its {len(self._images)} images can be read")


class Pacer:
    """Spaces frames ``1/fps`` seconds apart (fps 0: no pacing); the first frame is due at once.

    A replay calls :meth:`wait` before each frame (sleeping until it is due); a live stream is never slept on but
    asks :meth:`due` for each frame grabbed, and the frames in between are dropped.
    """

    def __init__(self, fps: float, stop: threading.Event | None = None) -> None:
        """``stop``, once set, ends a :meth:`wait` early, so SIGTERM is not held up by a long frame period."""
        self._period = 1.0 / fps if fps > 0 else 0.0
        self._stop = stop or threading.Event()
        self._next: float | None = None
        self._last_grab: float | None = None

    def wait(self) -> None:
        """Sleep until the next frame is due, or ``stop`` is set."""
        if not self._period:
            return
        now = time.monotonic()
        if self._next is None or now - self._next > 1.0:  # first frame, or fell far behind: don't burst to catch up
            self._next = now
        elif self._next > now:
            self._stop.wait(self._next - now)
        self._next += self._period

    def due(self, now: float) -> bool:
        """Whether a frame grabbed at ``now`` (``time.monotonic()``) is to be published.

        A frame counts for its slot when it is at most half a camera frame interval (and half a period) early, so a
        camera as fast as ``fps``, with jitter, keeps every frame. Slots stay on a fixed grid (the rate is ``fps``
        on average) unless frames stop coming for a whole period; the grid then restarts at the next frame.
        """
        if not self._period:
            return True
        interval = now - self._last_grab if self._last_grab is not None else 0.0
        self._last_grab = now
        if self._next is not None and now < self._next - min(interval, self._period) / 2:
            return False
        if self._next is None or now - self._next >= self._period:
            self._next = now
        self._next += self._period
        return True


def sample_frames(source: str | Path, count: int) -> list[np.ndarray]:
    """``count`` BGR frames evenly spaced over one pass of ``source`` (video file or image folder), in order.

    Raises SourceError when the source cannot be read or holds fewer than ``count`` frames.
    """
    frame_source = FrameSource(str(source))
    total = frame_source.frame_count()
    if total is None:
        raise SourceError(f"{source} is a live stream: give a video file or an image folder to sample frames from")
    if count < 1 or total < count:
        raise SourceError(f"{source} has {total} frames, {count} requested: give a longer video or ask for fewer")
    wanted = set(np.linspace(0, total - 1, count).round().astype(int).tolist())
    frames = [frame.image for frame in frame_source.frames() if frame.index in wanted]
    if len(frames) != count:
        raise SourceError(f"{source} decoded only {len(frames)} of the {count} frames sampled: the file may be cut")
    return frames
