"""Running workers follow the production alias: new versions are swapped in between batches, broken ones refused."""

from __future__ import annotations

import time
import urllib.request

import pytest

from models.registry import ModelRegistry
from tests.pipeline import CamcountProcesses, consume_records, footage_path, frame_records
from tests.services import free_ports

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
        registry.promote("yolov4-tiny", promote_version)
        records = consume_records(settings, settings.kafka.detections_topic, lambda rs: len(rs) >= FRAMES,
                                  timeout_s=120)
        time.sleep(1)
    finally:
        processes.stop_all()
    return frame_records(records), processes.log("infer")


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


def _fallback_gauge(port: int) -> float | None:
    """The worker's camcount_model_fallback_active sample (None while its endpoint does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return None
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line.startswith("camcount_model_fallback_active{")]
    return values[0] if values else None


def _eventually(check, timeout_s: float = 60) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def test_a_corrupt_promoted_version_leaves_the_fallback_serving_with_its_metric_until_a_rollback_clears_it(
    pipeline_settings, two_version_registry, tmp_path
):
    root, old_version = two_version_registry
    registry = ModelRegistry(root)
    registry.resolve("yolov4-tiny@9.0.0").path.write_bytes(b"not an onnx model")
    port = free_ports(1)[0]
    settings = _with_registry(pipeline_settings(partitions=2, model_poll_s=0.3, metrics_port=port), root)
    frames, camera = 250, f"bad-{tmp_path.name[-4:]}"
    processes = CamcountProcesses(settings, tmp_path)
    try:
        processes.start("infer", "infer")
        processes.start("ingest", "ingest", "--camera-id", camera, "--source", str(footage_path()), "--fps", "15",
                        "--first-seq", "0", "--max-frames", str(frames))
        consume_records(settings, settings.kafka.detections_topic, lambda rs: len(rs) >= 20, timeout_s=120)
        assert _fallback_gauge(port) == 0
        registry.promote("yolov4-tiny", "9.0.0")
        assert _eventually(lambda: _fallback_gauge(port) == 1), processes.log("infer")[-3000:]
        served_by_fallback = consume_records(settings, settings.kafka.detections_topic,
                                             lambda rs: any(r["fallback"] for r in rs), timeout_s=60)
        registry.rollback("yolov4-tiny")
        assert _eventually(lambda: _fallback_gauge(port) == 0), processes.log("infer")[-3000:]
        records = consume_records(settings, settings.kafka.detections_topic, lambda rs: len(rs) >= frames,
                                  timeout_s=120)
    finally:
        processes.stop_all()
    log = processes.log("infer")
    records = frame_records(records)
    assert sorted(r["frame_seq"] for r in records) == list(range(frames)), log[-3000:]
    assert {r["model_version"] for r in records} == {old_version} and {r["status"] for r in records} == {"OK"}
    assert any(r["fallback"] for r in served_by_fallback)
    in_order = [r["fallback"] for r in sorted(records, key=lambda r: r["frame_seq"])]
    first, last = in_order.index(True), len(in_order) - 1 - in_order[::-1].index(True)
    assert not any(in_order[:first]) and all(in_order[first:last + 1]) and not any(in_order[last + 1:])
    assert "MODEL_002" in log
