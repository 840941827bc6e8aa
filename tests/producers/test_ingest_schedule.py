"""When the ingestor publishes and when it stops, with the broker replaced by an in-memory producer."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

import producers.ingest as ingest
from foundation.settings import Settings
from producers.ingest import CameraIngestor
from producers.sources import FrameSource, SourceError
from schemas import FRAME
from tests.pipeline import footage_path


class _MemoryProducer:
    """confluent_kafka.Producer's place: every produced record is delivered at once and kept, frames and end
    markers apart."""

    def __init__(self) -> None:
        self.frames: list[dict] = []
        self.ends: list[dict] = []
        self.produced_at: list[float] = []

    def produce(self, topic, value, key, headers, on_delivery) -> None:
        record = FRAME.decode(value, dict(headers))
        if record["end_of_stream"]:
            self.ends.append(record)
        else:
            self.frames.append(record)
            self.produced_at.append(time.monotonic())
        on_delivery(None, None)

    def poll(self, _timeout: float) -> int:
        return 0

    def flush(self, _timeout: float) -> int:
        return 0


@pytest.fixture
def producer(monkeypatch) -> _MemoryProducer:
    memory = _MemoryProducer()
    monkeypatch.setattr(ingest, "wait_for_broker", lambda *args, **kwargs: None)
    monkeypatch.setattr(ingest, "new_client", lambda factory, config: memory)
    return memory


class _EndingStream:
    """A live camera (cv2.VideoCapture's place) that delivers ``frames`` frames, then stops."""

    def __init__(self, frames: int) -> None:
        self.left = frames

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return True

    def get(self, _prop: int) -> float:
        return 25.0

    def grab(self) -> bool:
        self.left -= 1
        return self.left >= 0

    def retrieve(self) -> tuple[bool, np.ndarray]:
        return True, np.zeros((8, 8, 3), np.uint8)

    def release(self) -> None:
        pass


def test_max_frames_ends_the_run_when_the_last_frame_is_published_not_at_the_next_read(monkeypatch, producer):
    monkeypatch.setattr(FrameSource, "_open_capture", lambda self: _EndingStream(frames=3))
    source = FrameSource("rtsp://camera.invalid/stream")
    stats = CameraIngestor(Settings(), "door-1", source, fps=0, max_frames=3).run()
    assert (stats.published, stats.delivered) == (3, 3)


def test_live_frames_carry_the_time_they_were_grabbed(monkeypatch, producer):
    monkeypatch.setattr(FrameSource, "_open_capture", lambda self: _EndingStream(frames=2))
    before_ms = time.time() * 1000
    CameraIngestor(Settings(), "door-1", FrameSource("rtsp://camera.invalid/stream"), fps=0, max_frames=2).run()
    assert all(before_ms - 1 <= f["capture_ts_ms"] <= time.time() * 1000 for f in producer.frames)


def test_the_first_frame_is_published_without_waiting_a_frame_period(producer):
    started = time.monotonic()
    CameraIngestor(Settings(), "door-1", FrameSource(str(footage_path())), fps=0.02, max_frames=1).run()
    assert len(producer.frames) == 1 and producer.produced_at[0] - started < 5


def test_stop_during_a_long_frame_period_ends_the_run_at_once(producer):
    ingestor = CameraIngestor(Settings(), "door-1", FrameSource(str(footage_path())), fps=0.02)
    threading.Timer(0.5, ingestor.stop).start()
    started = time.monotonic()
    stats = ingestor.run()
    assert stats.published == 1 and time.monotonic() - started < 5


def test_a_run_ends_with_an_end_marker_that_repeats_its_last_frame_without_the_image(producer):
    CameraIngestor(Settings(), "door-1", FrameSource(str(footage_path())), fps=0, max_frames=3).run()
    last = producer.frames[-1]
    assert producer.ends == [{**last, "image": b"", "end_of_stream": True}]


def test_a_looped_file_ends_each_pass_with_an_end_marker(tmp_path, producer):
    for name in "abc":
        cv2.imwrite(str(tmp_path / f"{name}.jpg"), np.zeros((8, 8, 3), np.uint8))
    CameraIngestor(Settings(), "door-1", FrameSource(str(tmp_path)), fps=0, loop=True, max_frames=5).run()
    seqs = [frame["frame_seq"] for frame in producer.frames]
    assert [end["frame_seq"] for end in producer.ends] == [seqs[2], seqs[4]]


def test_a_live_stream_that_stops_delivering_still_ends_with_an_end_marker(monkeypatch, producer):
    monkeypatch.setattr(FrameSource, "_open_capture", lambda self: _EndingStream(frames=2))
    with pytest.raises(SourceError, match="stopped delivering frames"):
        CameraIngestor(Settings(), "door-1", FrameSource("rtsp://camera.invalid/stream"), fps=0).run()
    assert [end["frame_seq"] for end in producer.ends] == [producer.frames[-1]["frame_seq"]]


def test_a_run_that_published_no_frame_sends_no_end_marker(monkeypatch, producer):
    monkeypatch.setattr(FrameSource, "_open_capture", lambda self: _EndingStream(frames=0))
    with pytest.raises(SourceError):
        CameraIngestor(Settings(), "door-1", FrameSource("rtsp://camera.invalid/stream"), fps=0).run()
    assert producer.frames == [] and producer.ends == []


class _FullBuffer:
    """A producer whose buffer stays full, as while the broker has been away for long."""

    def produce(self, *args, **kwargs) -> None:
        raise BufferError("Local: Queue full")

    def poll(self, timeout: float) -> int:
        return 0


class _LiveCamera:
    source, is_live, native_fps = "rtsp://door-1/stream", True, 10.0


def test_a_live_camera_drops_and_counts_frames_it_cannot_buffer_while_the_broker_is_away():
    ingestor = CameraIngestor(Settings(), "door-1", _LiveCamera(), fps=5)  # type: ignore[arg-type]
    ingestor._producer = _FullBuffer()  # type: ignore[assignment]

    for seq in range(3):
        ingestor._publish("frames", seq, 1_700_000_000_000 + seq, np.zeros((8, 8, 3), np.uint8))

    assert (ingestor.stats.dropped, ingestor.stats.published) == (3, 0)
