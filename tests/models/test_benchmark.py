"""bench_model per-stage figures, and the ``camcount bench model`` command around it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from camcount.commands import bench
from foundation.settings import Settings
from models.benchmark import BatchFigures, StageFigures, bench_model
from models.detector import Detector
from models.registry import ModelRegistry
from models.runtime import CPU
from tests.onnx_models import write_fixed_box_model

INPUT = 32


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    registry = ModelRegistry(tmp_path / "registry")
    registry.register(write_fixed_box_model(tmp_path / "fixed.onnx"), name="fixed", version="1.0.0", format="yolov5",
                      input_width=INPUT, input_height=INPUT, class_names=["person"])
    registry.promote("fixed", "1.0.0")
    return registry


@pytest.fixture
def detector(registry: ModelRegistry) -> Detector:
    return Detector.load(registry, "fixed@production", providers=[CPU], max_batch=4)


def frames(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8) for _ in range(count)]


def test_one_figure_set_per_batch_size_in_the_order_asked(detector: Detector) -> None:
    figures = bench_model(detector, frames(3), [4, 1, 2], iterations=3)
    assert [(f.batch_size, f.iterations) for f in figures] == [(4, 3), (1, 3), (2, 3)]


def test_every_stage_has_ordered_percentiles_and_a_throughput(detector: Detector) -> None:
    (figures,) = bench_model(detector, frames(5), [2], iterations=5)
    for stage in (figures.preprocess, figures.infer, figures.postprocess, figures.total):
        assert 0 < stage.p50_ms <= stage.p95_ms and stage.frames_per_s > 0


def test_the_total_stage_is_the_sum_of_the_three_stages(detector: Detector) -> None:
    (figures,) = bench_model(detector, frames(2), [1], iterations=1)
    parts = figures.preprocess.p50_ms + figures.infer.p50_ms + figures.postprocess.p50_ms
    assert figures.total.p50_ms == pytest.approx(parts)


def test_a_batch_size_above_the_detectors_max_batch_is_refused(detector: Detector) -> None:
    with pytest.raises(ValueError, match=r"batch sizes \[8\] outside \[1, 4\]"):
        bench_model(detector, frames(1), [1, 8], iterations=1)


def test_stage_throughput_is_frames_per_mean_batch_time() -> None:
    figures = StageFigures.of([10.0, 30.0], batch_size=8)
    assert figures.frames_per_s == pytest.approx(8 / 0.020)


def test_pre_post_share_compares_median_host_time_with_median_inference() -> None:
    def stage(p50: float) -> StageFigures:
        return StageFigures(p50, p50, 1.0)

    figures = BatchFigures(8, 10, stage(3.0), stage(40.0), stage(1.0), stage(44.0))
    assert figures.pre_post_over_infer == pytest.approx(0.1)


def test_batch_sizes_parse_comma_separated_without_duplicates() -> None:
    assert bench.batch_sizes("1,8,8,32") == [1, 8, 32]


@pytest.mark.parametrize("text", ["0,8", "eight", ""])
def test_batch_sizes_reject_non_positive_or_non_numeric_text(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        bench.batch_sizes(text)


def test_bench_model_command_prints_json_with_the_provider(
    registry: ModelRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for index in range(4):
        cv2.imwrite(str(folder / f"{index}.png"), frames(1)[0])
    parser = argparse.ArgumentParser()
    bench.register_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "model", "--model", "fixed@1.0.0", "--batch", "1,2", "--iterations", "2",
                              "--frames", "4", "--source", str(folder), "--json"])
    settings = Settings(home=tmp_path, model={"registry": str(tmp_path / "registry"), "providers": [CPU]})
    assert args.handler(settings, args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["provider"] == CPU and report["model"] == "fixed@1.0.0"
    assert [b["batch_size"] for b in report["batches"]] == [1, 2]
