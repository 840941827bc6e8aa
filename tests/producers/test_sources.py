"""Frame sources: video files, image folders, live streams, pacing, and clear errors for what is not one."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from producers.sources import FrameSource, Pacer, SourceError, sample_frames
from tests.pipeline import footage_path


def test_a_missing_path_is_a_clear_error():
    with pytest.raises(SourceError, match="not found"):
        FrameSource("/nonexistent/video.avi")


def test_a_file_that_is_not_a_video_is_a_clear_error(tmp_path):
    bogus = tmp_path / "notes.txt"
    bogus.write_text("hello")
    with pytest.raises(SourceError, match="cannot open"):
        FrameSource(str(bogus))


def test_an_image_folder_yields_its_images_in_name_order_at_the_given_rate(tmp_path):
    for name, value in (("b.png", 200), ("a.jpg", 100)):
        cv2.imwrite(str(tmp_path / name), np.full((8, 8, 3), value, np.uint8))
    (tmp_path / "readme.txt").write_text("ignored")
    source = FrameSource(str(tmp_path), folder_fps=2.0)
    frames = list(source.frames())
    assert [int(f.image.mean()) for f in frames] == [100, 200]
    assert [f.offset_ms for f in frames] == [0.0, 500.0]
    assert source.frame_count() == 2


def test_an_empty_image_folder_is_a_clear_error(tmp_path):
    with pytest.raises(SourceError, match="holds no images"):
        FrameSource(str(tmp_path))


def test_a_video_file_knows_its_rate_and_length():
    source = FrameSource(str(footage_path()))
    assert source.native_fps == pytest.approx(10.0)
    assert source.frame_count() == 795


def test_a_video_file_without_a_decodable_frame_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty.avi"
    cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48)).release()
    with pytest.raises(SourceError, match="no frame"):
        list(FrameSource(str(empty)).frames())


def test_a_folder_of_unreadable_images_is_a_clear_error(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(SourceError, match="none of its 1 images"):
        list(FrameSource(str(tmp_path)).frames())


class _FakeStream:
    """A live camera for cv2.VideoCapture's place: ``frames`` grabs succeed, then the stream ends."""

    def __init__(self, frames: int) -> None:
        self.left = frames
        self.grabbed = self.retrieved = 0

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return True

    def get(self, _prop: int) -> float:
        return 25.0

    def grab(self) -> bool:
        if self.left == 0:
            return False
        self.left -= 1
        self.grabbed += 1
        return True

    def retrieve(self) -> tuple[bool, np.ndarray]:
        self.retrieved += 1
        return True, np.full((4, 4, 3), self.grabbed, np.uint8)

    def release(self) -> None:
        pass


def _live_source(monkeypatch, stream: _FakeStream) -> FrameSource:
    monkeypatch.setattr(FrameSource, "_open_capture", lambda self: stream)
    return FrameSource("rtsp://camera.invalid/stream")


def test_a_live_stream_is_grabbed_continuously_but_only_kept_frames_are_decoded(monkeypatch):
    stream = _FakeStream(frames=9)
    source = _live_source(monkeypatch, stream)
    before_ms = time.time() * 1000
    kept = []
    with pytest.raises(SourceError, match="stopped delivering frames"):
        for frame in source.live_frames(keep=lambda _grabbed_at: stream.grabbed % 3 == 1):
            kept.append(frame)
    assert [int(f.image[0, 0, 0]) for f in kept] == [1, 4, 7]
    assert (stream.grabbed, stream.retrieved) == (9, 3)
    assert all(f.offset_ms is None and before_ms <= f.grabbed_ms <= time.time() * 1000 for f in kept)


def test_a_live_stream_ends_when_stop_is_set(monkeypatch):
    stop = threading.Event()
    source = _live_source(monkeypatch, _FakeStream(frames=100))
    for frame in source.live_frames(keep=lambda _grabbed_at: True, stop=stop):
        if frame.index == 2:
            stop.set()
    assert frame.index == 2


def _published(camera_fps: float, target_fps: float, seconds: float, jitter_s: float = 0.0) -> list[float]:
    """Grab times (s) the Pacer publishes of a camera grabbing at ``camera_fps`` (each grab +- ``jitter_s``)."""
    pacer = Pacer(target_fps)
    rng = np.random.default_rng(1)
    grabs = [i / camera_fps + rng.uniform(-jitter_s, jitter_s) for i in range(int(seconds * camera_fps))]
    return [t for t in grabs if pacer.due(t)]


def test_a_live_camera_faster_than_fps_is_published_at_fps_dropping_the_frames_in_between():
    published = _published(camera_fps=25, target_fps=10, seconds=10)
    assert len(published) == 100
    assert max(np.diff(published)) <= 0.1 + 1 / 25


def test_a_live_camera_as_fast_as_fps_keeps_every_frame_despite_jitter():
    assert len(_published(camera_fps=10, target_fps=10, seconds=10, jitter_s=0.02)) == 100


def test_a_live_camera_slower_than_fps_keeps_every_frame():
    assert len(_published(camera_fps=5, target_fps=10, seconds=10)) == 50


def test_a_live_camera_far_below_fps_is_published_at_fps():
    published = _published(camera_fps=30, target_fps=0.5, seconds=60)
    assert published[0] == 0.0 and len(published) == 30


def test_the_first_frame_is_due_at_once():
    pacer = Pacer(fps=0.02)
    started = time.monotonic()
    pacer.wait()
    assert time.monotonic() - started < 0.1


def test_stop_ends_a_long_pacer_wait_at_once():
    stop = threading.Event()
    pacer = Pacer(fps=0.02, stop=stop)
    pacer.wait()
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    pacer.wait()
    assert time.monotonic() - started < 2


def test_a_paced_replay_waits_one_period_between_frames():
    pacer = Pacer(fps=20)
    pacer.wait()
    started = time.monotonic()
    pacer.wait()
    assert 0.04 <= time.monotonic() - started < 0.2


def test_frames_are_sampled_evenly_from_a_source(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for index in range(10):
        cv2.imwrite(str(folder / f"{index:02d}.png"), np.full((8, 8, 3), index * 10, np.uint8))
    sampled = sample_frames(folder, 4)
    assert [int(image[0, 0, 0]) for image in sampled] == [0, 30, 60, 90]
