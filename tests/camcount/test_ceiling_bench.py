"""``camcount bench ceiling`` at a tiny size on the session's stack: every figure is there, and every frame came back.

A behaviour check, not a timing assertion: the figures only have to be positive.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import Consumer

from camcount.ceiling_bench import bench_ceiling, footage_jpegs, publish_frames
from foundation.kafka import consumer_config
from models.detector import Detector
from models.registry import ModelRegistry
from models.runtime import CPU
from models.tiny_graphs import NULL_DETECTOR_CLASSES, register_null_detector
from tests.pipeline import CamcountProcesses, footage_path

FRAMES = 50


@pytest.mark.parametrize("box", [True, False])
def test_null_detector_gives_one_box_or_none_in_frame_pixels_whatever_the_image(tmp_path: Path, box: bool):
    registry = ModelRegistry(tmp_path / "registry")
    manifest = register_null_detector(registry, tmp_path, input_size=64, box=box)
    assert manifest.num_classes == NULL_DETECTOR_CLASSES
    detector = Detector.from_model(registry.resolve(f"{manifest.name}@{manifest.version}"), providers=[CPU],
                                   max_batch=4)
    frames = [np.zeros((240, 320, 3), np.uint8), np.full((480, 640, 3), 255, np.uint8)]
    results = detector.detect(frames)
    assert [len(r) for r in results] == ([1, 1] if box else [0, 0])
    if box:  # centred in the 64 x 64 input, so centred in every frame after letterboxing back
        for frame, detections in zip(frames, results):
            x1, y1, x2, y2 = detections.xyxy[0]
            assert (x1 + x2) / 2 == pytest.approx(frame.shape[1] / 2)
            assert (y1 + y2) / 2 == pytest.approx(frame.shape[0] / 2)
        assert results[0].class_id.tolist() == [0]


@pytest.mark.slow
@pytest.mark.integration
def test_ceiling_reports_positive_figures_and_every_frame_comes_back(isolated_settings):
    settings = isolated_settings(provisioned=False)
    figures = bench_ceiling(settings, footage_path(), frames=FRAMES, batch=8, width=160, partitions=2)
    for name in ("with_decode_fps", "without_decode_fps", "with_decode_cpu_cores", "without_decode_cpu_cores",
                 "decode_fps_per_core", "decode_fps_pool"):
        value = getattr(figures, name)
        assert math.isfinite(value) and value > 0, (name, value)
    assert (figures.with_decode_records, figures.with_decode_distinct_frames) == (FRAMES, FRAMES)
    assert (figures.without_decode_records, figures.without_decode_distinct_frames) == (FRAMES, FRAMES)
    assert (figures.jpeg_width, figures.jpeg_height) == (160, 120)
    assert figures.model == "null-detector@1.0.0" and figures.cpus >= 1


@pytest.mark.slow
@pytest.mark.integration
def test_bench_ceiling_command_prints_one_json_object(isolated_settings, tmp_path: Path):
    processes = CamcountProcesses(isolated_settings(provisioned=False), tmp_path)
    result = processes.run("bench", "ceiling", "--frames", "20", "--batch", "4", "--width", "96", "--partitions", "1",
                           "--source", str(footage_path()), "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["with_decode_records"] == figures["without_decode_records"] == 20
    assert figures["without_decode_fps"] > 0


@pytest.mark.slow
@pytest.mark.integration
def test_consumer_with_a_full_prefetch_queue_fetches_again_without_a_one_second_pause(isolated_settings):
    """What held the worker's ceiling at a fifth: librdkafka's default fetch.queue.backoff.ms (1000) paused
    fetching for a second each time the prefetch queue was over its bound, which a worker catching up on a backlog
    drains in a fraction of that. ``consumer_config`` sets a short backoff."""
    settings = isolated_settings(partitions=1)
    jpegs, _ = footage_jpegs(footage_path(), 20, 384)  # ~35 KB each: a 1 MB prefetch queue holds ~30
    frames = 400
    publish_frames(settings, jpegs, frames, (384, 288))
    consumer = Consumer(consumer_config(settings, f"prefetch-{uuid.uuid4().hex[:6]}",
                                        **{"queued.max.messages.kbytes": 1024}))
    consumer.subscribe([settings.kafka.frames_topic])
    received, arrivals = 0, []
    deadline = time.monotonic() + 60
    try:
        while received < frames and time.monotonic() < deadline:
            batch = [m for m in consumer.consume(32, timeout=0.05) if m.error() is None]
            if batch:
                received += len(batch)
                arrivals.append(time.monotonic())
                time.sleep(0.002)  # a little work per batch, as a worker does
    finally:
        consumer.close()
    assert received == frames
    longest_gap = max(b - a for a, b in zip(arrivals, arrivals[1:]))
    assert longest_gap < 0.5, f"fetching paused for {longest_gap:.2f} s with a full prefetch queue"
