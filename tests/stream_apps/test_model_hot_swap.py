"""Running workers follow the production alias: new versions are swapped in between batches, broken ones refused."""

from __future__ import annotations

import time

import pytest

from models.registry import ModelRegistry
from tests.pipeline import CamcountProcesses, consume_records, footage_path

pytestmark = [pytest.mark.slow, pytest.mark.integration]

FRAMES = 100  # at 10 frames/s: several seconds left after the promotion for the background load


def _with_registry(settings, root):
    return settings.model_copy(update={"model": settings.model.model_copy(update={"registry": str(root)})})


def _stream_and_promote(settings, tmp_path, registry, promote_version: str, camera: str) -> tuple[list, str]:
    processes = CamcountProcesses(settings, tmp_path)
    try:
        processes.start("infer", "infer")
        processes.start("ingest", "ingest", "--camera-id", camera, "--source", str(footage_path()), "--fps", "10",
                        "--first-seq", "0", "--max-frames", str(FRAMES))
        consume_records(settings, settings.kafka.detections_topic, lambda rs: len(rs) >= FRAMES // 3,
                        timeout_s=120)
        registry.promote("yolov3-tiny", promote_version)
        records = consume_records(settings, settings.kafka.detections_topic, lambda rs: len(rs) >= FRAMES,
                                  timeout_s=120)
        time.sleep(1)
    finally:
        processes.stop_all()
    return records, processes.log("infer")


def test_promoting_a_version_swaps_it_in_with_every_frame_inferred_exactly_once(
    pipeline_settings, two_version_registry, tmp_path
):
    root, old_version = two_version_registry
    registry = ModelRegistry(root)
    settings = _with_registry(pipeline_settings(partitions=2, model_poll_s=0.5), root)
    records, log = _stream_and_promote(settings, tmp_path, registry, "9.0.0", f"swap-{tmp_path.name[-4:]}")
    assert sorted(r["frame_seq"] for r in records) == list(range(FRAMES)), log[-3000:]
    versions = [r["model_version"] for r in sorted(records, key=lambda r: r["frame_seq"])]
    swap = versions.index("9.0.0")
    assert 0 < swap and set(versions[:swap]) == {old_version} and set(versions[swap:]) == {"9.0.0"}


def test_a_corrupt_promoted_version_is_refused_and_the_old_one_keeps_serving(
    pipeline_settings, two_version_registry, tmp_path
):
    root, old_version = two_version_registry
    registry = ModelRegistry(root)
    registry.resolve("yolov3-tiny@9.0.0").path.write_bytes(b"not an onnx model")
    settings = _with_registry(pipeline_settings(partitions=2, model_poll_s=0.5), root)
    records, log = _stream_and_promote(settings, tmp_path, registry, "9.0.0", f"bad-{tmp_path.name[-4:]}")
    assert sorted(r["frame_seq"] for r in records) == list(range(FRAMES))
    assert {r["model_version"] for r in records} == {old_version}
    assert "MODEL_002" in log
