"""Publishes one camera's frames to the ``frames`` topic, keyed by camera id, with tracing headers."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from foundation.kafka import new_client, producer_config, wait_for_broker
from foundation.settings import Settings
from producers.encoding import JPEG_QUALITY, encode_jpeg
from producers.sources import FrameSource, Pacer, SourceFrame
from schemas import FRAME
from schemas.frames import end_of_stream_marker, frame_headers

log = logging.getLogger(__name__)

VariantAssigner = Callable[[str, int], tuple[str, str]]
"""(camera id, capture time ms) -> (experiment, variant); ("", "") means the production model."""


def production_variant(camera_id: str, capture_ts_ms: int) -> tuple[str, str]:
    return "", ""


BUFFER_KBYTES = 256 * 1024
"""Frames the producer may hold while the broker is away (librdkafka ``queue.buffering.max.kbytes``): at 10 fps of
~100 KB frames, about four minutes; librdkafka retries them until ``message.timeout.ms`` (5 min) ends."""


@dataclass
class IngestStats:
    published: int = 0
    delivered: int = 0
    failed: int = 0
    dropped: int = 0
    """Frames of a live source not published because the producer's buffer was full (the broker away too long)."""
    started: float = field(default_factory=time.monotonic)

    def rate(self) -> float:
        return self.published / max(time.monotonic() - self.started, 1e-9)


class CameraIngestor:
    """Reads a source and publishes JPEG frames until the source ends (or forever with ``loop``) or ``stop()``.

    Invariants: every published frame is either delivered or counted in ``stats.failed`` once ``run`` returns,
    because ``run`` always flushes the producer before returning, also after SIGINT/SIGTERM. Frame sequence
    numbers keep increasing across restarts of an ingestor: by default a run starts at its start time in
    milliseconds (so a camera may send up to 1000 frames per second), and counting, which ignores frames at
    or below the last one it saw, never mistakes a restarted camera for a replay.

    A live stream is read continuously at the camera's own rate and only the frames due at ``fps`` are published
    (the others are dropped), so a stream never falls behind; its frames' capture time is the moment they were
    grabbed. A file or folder is replayed frame by frame at ``fps``, stamped with the wall clock when paced (a paced
    file behaves like a camera), or, unpaced (fps 0), on the source's own timeline from the start of the run.
    The first frame is published at once; ``max_frames`` ends the run as soon as that many are published.

    However the run ends (the source's end, ``max_frames``, a signal, a source error), it ends with an end-of-stream
    marker after the last published frame, carrying that frame's seq, capture time, size, experiment and variant,
    so that counting ends the camera's tracks at once instead of when the camera comes back. A looped file sends
    one after each pass too: the next pass starts the scene over, so each pass is counted as ``analyze`` counts
    the file, and no track joins the end of one pass to the start of the next.

    While the broker is away the producer buffers up to ``BUFFER_KBYTES`` and retries. When that is full, a file
    source waits (nothing is lost), and a live source, which cannot wait, drops the frame and counts it in
    ``stats.dropped`` (logged, and in the final report): nothing is dropped silently.
    """

    def __init__(
        self,
        settings: Settings,
        camera_id: str,
        source: FrameSource,
        fps: float | None = None,
        loop: bool = False,
        jpeg_quality: int = JPEG_QUALITY,
        assign_variant: VariantAssigner = production_variant,
        max_frames: int | None = None,
        first_seq: int | None = None,
    ) -> None:
        if not camera_id or any(c.isspace() for c in camera_id):
            raise ValueError(f"camera id {camera_id!r} must be non-empty and contain no whitespace")
        self.settings = settings
        self.camera_id = camera_id
        self.source = source
        self.fps = source.native_fps or 0.0 if fps is None else fps
        self.loop = loop
        self.jpeg_quality = jpeg_quality
        self.assign_variant = assign_variant
        self.max_frames = max_frames
        self.first_seq = first_seq
        self.stats = IngestStats()
        self._stop = threading.Event()
        self._producer: Producer | None = None
        self._last: dict[str, Any] | None = None
        """The last published frame's record: what the end-of-stream marker repeats."""

    def stop(self, *_: object) -> None:
        self._stop.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGTERM, self.stop)

    def _on_delivery(self, error: KafkaError | None, _message: Message) -> None:
        if error is None:
            self.stats.delivered += 1
        else:
            self.stats.failed += 1
            log.error("frame delivery failed: %s", error)

    def _on_end_delivery(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            log.error("camera %s: end-of-stream marker not delivered (%s); counting ends the camera's tracks when "
                      "it next sends frames", self.camera_id, error)

    def run(self, progress_every: int = 100) -> IngestStats:
        wait_for_broker(self.settings.kafka_bootstrap(), timeout_s=15, client_config=self.settings.kafka.client_config)
        self._producer = new_client(Producer, producer_config(self.settings, **{
            "queue.buffering.max.kbytes": BUFFER_KBYTES}))
        topic = self.settings.kafka.frames_topic
        start_ms = time.time() * 1000.0
        first_seq = int(start_ms) if self.first_seq is None else self.first_seq
        published = 0
        pass_offset_ms = 0.0
        pacer = Pacer(self.fps, self._stop)
        log.info("camera %s: publishing %s to %s at %s", self.camera_id, self.source.source, topic,
                 f"{self.fps:g} fps" if self.fps else "full speed")
        try:
            while not self._stop.is_set():
                last_offset = 0.0
                for frame in self._due_frames(pacer):
                    if frame.grabbed_ms is not None:
                        capture_ms = int(frame.grabbed_ms)
                    elif self.fps or frame.offset_ms is None:
                        capture_ms = int(time.time() * 1000)
                    else:
                        last_offset = frame.offset_ms
                        capture_ms = int(start_ms + pass_offset_ms + frame.offset_ms)
                    self._publish(topic, first_seq + published, capture_ms, frame.image)
                    published += 1
                    if progress_every and published % progress_every == 0:
                        log.info("camera %s: %d frames published (%.1f/s)", self.camera_id, published,
                                 self.stats.rate())
                    if self.max_frames is not None and published >= self.max_frames:
                        self._stop.set()
                        break
                if not self.loop:
                    break
                self._publish_end(topic)  # the next pass starts the scene over: no track goes on across it
                frame_ms = 1000.0 / (self.source.native_fps or 25.0)
                pass_offset_ms += last_offset + frame_ms
        finally:
            self._publish_end(topic)
            remaining = self._producer.flush(30)
            if remaining:
                self.stats.failed += remaining
                log.error("camera %s: %d frames not delivered within 30 s", self.camera_id, remaining)
        log.info("camera %s: done, %d published, %d delivered, %d failed, %d dropped (buffer full)",
                 self.camera_id, self.stats.published, self.stats.delivered, self.stats.failed, self.stats.dropped)
        return self.stats

    def _due_frames(self, pacer: Pacer) -> Iterator[SourceFrame]:
        """The frames to publish, each when it is due; ends early once ``stop()`` is called."""
        if self.source.is_live:
            yield from self.source.live_frames(keep=pacer.due, stop=self._stop)
            return
        for frame in self.source.frames():
            pacer.wait()
            if self._stop.is_set():
                return
            yield frame

    def _publish_end(self, topic: str) -> None:
        """Queue the end-of-stream marker after the last published frame (none if no frame was published since
        the last marker); it waits up to 30 s for room in the producer's buffer, then is given up, logged."""
        if self._last is None or self._producer is None:
            return
        record = end_of_stream_marker(self._last)
        deadline = time.monotonic() + 30
        while True:
            try:
                self._producer.produce(topic, value=FRAME.encode(record), key=self.camera_id.encode(),
                                       headers=frame_headers(record), on_delivery=self._on_end_delivery)
                log.info("camera %s: end of stream after frame %d", self.camera_id, record["frame_seq"])
                self._last = None  # ended: until the next frame there is nothing more to end
                return
            except BufferError:
                if time.monotonic() > deadline:
                    log.error("camera %s: end-of-stream marker not queued (producer buffer full for 30 s); "
                              "counting ends the camera's tracks when it next sends frames", self.camera_id)
                    return
                self._producer.poll(0.1)
            except KafkaException as exc:
                log.error("camera %s: end-of-stream marker not queued (%s); counting ends the camera's tracks "
                          "when it next sends frames", self.camera_id, exc)
                return

    def _publish(self, topic: str, seq: int, capture_ms: int, image: np.ndarray) -> None:
        jpeg = encode_jpeg(image, self.jpeg_quality)
        experiment, variant = self.assign_variant(self.camera_id, capture_ms)
        height, width = image.shape[:2]
        record = {
            "camera_id": self.camera_id, "frame_seq": seq, "capture_ts_ms": capture_ms,
            "width": width, "height": height, "encoding": "jpeg", "image": jpeg,
            "variant": variant, "experiment": experiment, "end_of_stream": False,
        }
        value = FRAME.encode(record)
        headers = frame_headers(record)
        assert self._producer is not None
        while True:
            try:
                self._producer.produce(topic, value=value, key=self.camera_id.encode(), headers=headers,
                                       on_delivery=self._on_delivery)
                break
            except BufferError:  # the buffer is full: the broker has been away for a while
                if self.source.is_live:  # a camera does not wait: drop this frame, counted
                    self.stats.dropped += 1
                    if self.stats.dropped == 1 or self.stats.dropped % 100 == 0:
                        log.warning("camera %s: producer buffer full (broker away?): %d frames dropped so far",
                                    self.camera_id, self.stats.dropped)
                    self._producer.poll(0)
                    return
                self._producer.poll(0.1)  # a file waits until deliveries drain
        self._producer.poll(0)
        self.stats.published += 1
        self._last = record
