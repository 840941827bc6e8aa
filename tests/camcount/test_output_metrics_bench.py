"""``camcount bench output-metrics`` at a tiny size on the session's stack: both arms of every round drained every
frame, and the figures are there. A behaviour check, not a timing assertion: the figures only have to be positive."""

from __future__ import annotations

import math

import pytest

from camcount.output_metrics_bench import bench_output_metrics
from tests.pipeline import footage_path


@pytest.mark.slow
@pytest.mark.integration
def test_output_metrics_bench_reports_a_ratio_per_round_for_the_near_zero_cost_model(isolated_settings):
    settings = isolated_settings(provisioned=False)

    figures = bench_output_metrics(settings, footage_path(), frames=40, batch=8, rounds=2, width=96,
                                   real_model=False)

    [cost] = figures.models
    assert len(cost.fps_on) == len(cost.fps_off) == len(cost.ratios) == 2
    assert all(math.isfinite(r) and r > 0 for r in (*cost.ratios, *cost.cpu_ratios))
    assert cost.boxes_per_frame == 10 and cost.observe_us_per_frame > 0
