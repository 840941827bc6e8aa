"""`camcount bench pipeline`: the latency budget adds up, its options take lists, its table prints, and one small
real run through the broker fills every stage."""

from __future__ import annotations

import argparse
import json

import pytest

from camcount.commands import bench
from camcount.pipeline_bench import (
    BUDGET,
    CpuPerFrame,
    LatencyFigures,
    Percentiles,
    PipelineFigures,
    ThroughputFigures,
    measure_pipeline,
    stage_budget,
)
from camcount.stack import LocalStack
from tests.pipeline import footage_path

FRAME_TIMES = {"capture": 1000.0, "appended": 1004.0, "fetched": 1010.0, "decoded": 1013.0, "infer_start": 1020.0,
               "infer_end": 1070.0, "produced": 1071.0, "read": 1080.0, "batch": 1.0}


def test_the_stages_of_one_frame_add_up_to_its_end_to_end_latency():
    budget = stage_budget([FRAME_TIMES])
    assert [budget[key].p50 for key, *_ in BUDGET] == [4.0, 6.0, 3.0, 7.0, 50.0, 1.0, 9.0]
    assert sum(budget[key].p50 for key, *_ in BUDGET) == budget["e2e"].p50 == 80.0


def test_a_frame_without_an_acknowledgement_time_is_left_out_of_the_two_stages_that_need_it():
    without_ack = {k: v for k, v in FRAME_TIMES.items() if k != "appended"}
    budget = stage_budget([FRAME_TIMES, without_ack])
    assert budget["append"].count == budget["fetch"].count == 1
    assert budget["decode"].count == budget["e2e"].count == 2


def test_a_stage_nothing_measured_has_no_percentiles():
    assert Percentiles.of([]) == Percentiles(None, None, None, 0)


def test_load_takes_a_comma_list_of_positive_shares():
    assert bench._loads("0.3,0.5,0.8,0.5") == [0.3, 0.5, 0.8]
    for bad in ("0", "0.5,-1", "nan", ","):
        with pytest.raises(argparse.ArgumentTypeError):
            bench._loads(bad)


def _figures() -> PipelineFigures:
    stages = {key: Percentiles(1.0, 2.0, 3.0, 10) for key, *_ in BUDGET}
    stages["append"] = Percentiles.of([])
    stages["e2e"] = Percentiles(150.0, 250.0, 400.0, 10)
    return PipelineFigures(
        frames=10, model="m@1", provider="CPUExecutionProvider", batch1_detect_ms=Percentiles(45.0, 50.0, 52.0, 20),
        jpeg_decode_ms=Percentiles(2.0, 3.0, 3.5, 20),
        throughput=[ThroughputFigures(batch=1, in_process_fps=20.0, pipeline_fps=19.0, ratio=0.95,
                                      ratios=[0.97, 0.95, 0.91],
                                      cpu_ms=CpuPerFrame(in_process=84.7, worker=90.2, neighbours=0.8, broker=None))],
        latency=[LatencyFigures(load=0.3, max_batch=8, paced_fps=6.0, stages=stages, batch_mean=1.1, batch_max=2),
                 LatencyFigures(load=0.8, max_batch=8, paced_fps=16.0, stages=stages, batch_mean=2.5, batch_max=8)])


def _run_command(monkeypatch, capsys, *argv: str) -> str:
    monkeypatch.setattr("camcount.pipeline_bench.bench_pipeline", lambda *args: _figures())
    parser = argparse.ArgumentParser()
    bench.register_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "pipeline", "--source", "footage.avi", *argv])
    assert args.handler(None, args) == 0
    return capsys.readouterr().out


def test_the_table_has_a_column_per_load_and_a_row_per_stage(monkeypatch, capsys):
    out = _run_command(monkeypatch, capsys, "--load", "0.3,0.8", "--batch", "1,8")
    assert "load 0.3 (6.0 f/s)" in out and "load 0.8 (16.0 f/s)" in out
    assert "detect 45.0 / 50.0 / 52.0 ms" in out
    rows = {line.split("  ")[1].strip(): line for line in out.splitlines() if line.startswith("  ")}
    assert "- / - / -" in rows["capture -> broker append (ack)"]
    assert rows["end to end (capture -> read)"].count("150 / 250 / 400") == 2
    assert "1.10 / 2" in rows["frames per model run, mean / max"]


def test_the_throughput_row_shows_the_median_ratio_and_every_round(monkeypatch, capsys):
    out = _run_command(monkeypatch, capsys, "--rounds", "3")
    (row,) = [line for line in out.splitlines() if "(0.970" in line]
    assert "0.950  (0.970, 0.950, 0.910)" in row and "medians of 3 alternating rounds" in out


def test_cpu_per_frame_shows_each_process_and_a_dash_for_a_broker_elsewhere(monkeypatch, capsys):
    out = _run_command(monkeypatch, capsys)
    (row,) = [line for line in out.splitlines() if "84.7" in line]
    assert row.split() == ["1", "84.7", "90.2", "0.8", "-"]


def test_json_carries_throughput_latency_stages_and_the_batch_1_reference(monkeypatch, capsys):
    figures = json.loads(_run_command(monkeypatch, capsys, "--json"))
    assert figures["batch1_detect_ms"]["p50"] == 45.0
    assert figures["throughput"][0]["ratio"] == 0.95
    assert [lat["load"] for lat in figures["latency"]] == [0.3, 0.8]
    assert set(figures["latency"][0]["stages"]) == {key for key, *_ in BUDGET} | {"e2e"}
    assert figures["latency"][0]["stages"]["append"]["p50"] is None


@pytest.mark.slow
@pytest.mark.integration
def test_a_small_run_through_the_broker_measures_every_stage(pipeline_settings, stack_settings):
    broker_pid = next((svc.pid for svc in LocalStack(stack_settings).status() if svc.name == "kafka"), None)
    figures = measure_pipeline(pipeline_settings(), footage_path(), frames=12, batches=(2,), loads=(0.5,), rounds=2,
                               broker_pid=broker_pid)
    (throughput,) = figures.throughput
    assert throughput.batch == 2 and throughput.pipeline_fps > 0
    assert len(throughput.ratios) == 2 and min(throughput.ratios) <= throughput.ratio <= max(throughput.ratios)
    cpu = throughput.cpu_ms
    assert cpu.in_process > 0 and cpu.worker > 0 and cpu.neighbours > 0
    assert (cpu.broker is None) == (broker_pid is None)
    assert figures.batch1_detect_ms.p50 > 0
    (latency,) = figures.latency
    assert latency.max_batch == 2 and 1 <= latency.batch_mean <= latency.batch_max <= 2
    for key, stage in latency.stages.items():
        assert stage.count == 12, key
        assert stage.p50 >= 0, key
    assert latency.stages["e2e"].p50 >= latency.stages["inference"].p50
