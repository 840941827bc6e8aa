"""``camcount bench api``: its load bookkeeping, and one short real run against a real ``camcount api``."""

from __future__ import annotations

import itertools

import pytest

from camcount.api_bench import _completed_in, _Sample, _summary, bench_api, distinct_bodies, render
from foundation.settings import Settings
from tests.pipeline import footage_path


def test_every_request_body_is_distinct() -> None:
    bodies = list(itertools.islice(distinct_bodies([b"\xff\xd8a\xff\xd9", b"\xff\xd8b\xff\xd9"]), 50))

    assert len(set(bodies)) == 50


def test_throughput_counts_what_completes_inside_the_window() -> None:
    samples = [_Sample(sent=0.0, latency_ms=500, ok=True, cached=False),  # completes at 0.5: before the window
               _Sample(sent=0.5, latency_ms=1000, ok=True, cached=True),  # 1.5
               _Sample(sent=1.0, latency_ms=1500, ok=False, cached=False, error="HTTP 504"),  # 2.5
               _Sample(sent=2.0, latency_ms=1500, ok=True, cached=False)]  # 3.5: after it

    run = _summary("x", _completed_in(samples, (1.0, 3.0)), clients=2, rate=None, window=(1.0, 3.0), mean_batch=4.0)

    assert (run.requests, run.errors, run.requests_per_s) == (2, 1, 0.5)
    assert run.cache_hit_rate == 1.0 and run.error_examples == ["HTTP 504"] and run.p50_ms == 1000.0


@pytest.mark.integration
@pytest.mark.slow
def test_a_short_bench_run_reports_every_figure(stack_settings: Settings, model_registry: str) -> None:
    settings = stack_settings.namespaced("apibench").model_copy(update={  # the session stack's home: it runs
        "model": stack_settings.model.model_copy(update={
            "registry": model_registry, "providers": ["CPUExecutionProvider"]})})

    figures = bench_api(settings, footage_path(), clients=4, duration_s=2.0, warmup_s=0.5, frames=16,
                        in_process_s=1.0)

    assert figures.saturation.requests > 0 and figures.saturation.errors == 0
    assert figures.half_load.requests > 0 and figures.in_process_images_per_s > 0
    assert figures.cached is not None and figures.cached.cache_hit_rate > 0.5
    assert "throughput at saturation / in-process" in render(figures)
    assert set(figures.as_dict()) >= {"throughput_ratio", "latency_bar_ms", "saturation", "half_load"}
    assert figures.cpu_ms_per_image["api_server"] > 0 and figures.cpu_ms_per_image["in_process"] > 0
