"""``camcount bench ...``: measurements, one sub-action per thing measured, each with its own parser and handler."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from camcount.accuracy import DEFAULT_TOLERANCE_FRAMES, comparison_rows, run_accuracy
from camcount.agreement import DEFAULT_LINES as DEFAULT_AGREEMENT_LINES
from camcount.agreement import run_agreement
from camcount.commands.argtypes import non_negative_float, non_negative_int, positive_float, positive_int
from foundation.settings import Settings
from producers.sources import sample_frames

DEFAULT_BATCH_SIZES = "1,8,32"
DEFAULT_FRAMES = 64


def default_video(settings: Settings) -> Path:
    """The footage benchmarks and calibration use unless told otherwise: ``<home>/data/vtest.avi``."""
    return settings.layout().sample_footage


def batch_sizes(text: str) -> list[int]:
    """argparse type: ``1,8,32`` -> [1, 8, 32] (positive, duplicates removed, order kept)."""
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give comma-separated positive integers, e.g. 1,8,32") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give comma-separated positive integers, e.g. 1,8,32")
    return list(dict.fromkeys(sizes))


# --- bench model ----------------------------------------------------------------------------------------------
def cmd_bench_model(settings: Settings, args: argparse.Namespace) -> int:
    from models.benchmark import bench_model
    from models.loading import load_detector

    frames = sample_frames(args.source or default_video(settings), args.frames)
    detector = load_detector(settings, args.model, max_batch=max(args.batch), intra_op_threads=args.threads)
    figures = bench_model(detector, frames, args.batch, args.iterations)
    if args.json:
        print(json.dumps({"model": f"{detector.name}@{detector.version}", "precision": detector.manifest.precision,
                          "provider": detector.provider, "batches": [f.as_json() for f in figures]}))
        return 0
    print(f"{detector.name}@{detector.version} ({detector.manifest.precision}, "
          f"{detector.manifest.input_width}x{detector.manifest.input_height}) on {detector.provider}, "
          f"{args.iterations} iterations per batch size; ms per batch p50/p95, frames/s")
    print(f"{'batch':>5}  {'preprocess':>22}  {'inference':>22}  {'postprocess':>22}  {'total':>22}  pre+post/infer")
    for f in figures:
        cells = [f"{s.p50_ms:7.2f}/{s.p95_ms:7.2f} {s.frames_per_s:6.0f}"
                 for s in (f.preprocess, f.infer, f.postprocess, f.total)]
        print(f"{f.batch_size:>5}  " + "  ".join(f"{c:>22}" for c in cells) + f"  {f.pre_post_over_infer:13.1%}")
    return 0


def _add_model_parser(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser("model", help="latency and throughput of preprocessing, inference and postprocessing")
    p.add_argument("--model", help="NAME[@VERSION|@ALIAS] (default: settings.model.reference)")
    p.add_argument("--batch", type=batch_sizes, default=batch_sizes(DEFAULT_BATCH_SIZES),
                   help=f"comma-separated batch sizes (default {DEFAULT_BATCH_SIZES})")
    p.add_argument("--iterations", type=positive_int, default=30, help="timed detect calls per batch size (default 30)")
    p.add_argument("--source", help="video file or image folder to take frames from (default <home>/data/vtest.avi)")
    p.add_argument("--frames", type=positive_int, default=DEFAULT_FRAMES,
                   help=f"distinct frames, evenly spaced over the source, that batches cycle through "
                        f"(default {DEFAULT_FRAMES})")
    p.add_argument("--threads", type=positive_int, help="ONNX Runtime intra-op threads (default: physical cores)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_bench_model)


# --- bench pipeline -------------------------------------------------------------------------------------------
def _loads(text: str) -> list[float]:
    """argparse type: ``0.3,0.5,0.8`` -> [0.3, 0.5, 0.8] (each a finite number > 0, duplicates removed)."""
    loads = [positive_float(part.strip()) for part in text.split(",") if part.strip()]
    if not loads:
        raise argparse.ArgumentTypeError(f"{text!r}: give comma-separated shares of capacity, e.g. 0.3,0.5,0.8")
    return list(dict.fromkeys(loads))


def _ms(p50: float | None, p95: float | None, p99: float | None) -> str:
    return " / ".join("-" if v is None else f"{v:.0f}" if v >= 100 else f"{v:.1f}" for v in (p50, p95, p99))


def cmd_bench_pipeline(settings: Settings, args: argparse.Namespace) -> int:
    from camcount.pipeline_bench import BUDGET_LABELS, bench_pipeline

    figures = bench_pipeline(settings, Path(args.source) if args.source else default_video(settings), args.frames,
                             args.batch, args.load, args.rounds)
    if args.json:
        print(json.dumps(figures.as_dict()))
        return 0
    detect, decode = figures.batch1_detect_ms, figures.jpeg_decode_ms
    print(f"{figures.frames} frames, {figures.model} on {figures.provider}")
    print(f"batch-1 reference, same run: detect {_ms(detect.p50, detect.p95, detect.p99)} ms, "
          f"JPEG decode {_ms(decode.p50, decode.p95, decode.p99)} ms (p50 / p95 / p99)")
    print(f"{'max batch':>9}  {'in-process frames/s':>19}  {'through broker frames/s':>23}  ratio  "
          f"(medians of {args.rounds} alternating rounds; each round's ratio)")
    for t in figures.throughput:
        print(f"{t.batch:>9}  {t.in_process_fps:>19.1f}  {t.pipeline_fps:>23.1f}  {t.ratio:.3f}  "
              f"({', '.join(f'{r:.3f}' for r in t.ratios)})")
    print(f"CPU ms per frame (medians): {'max batch':>9}  {'in-process':>10}  {'worker process':>14}  "
          f"{'cameras + reader':>16}  {'local broker':>12}")
    for t in figures.throughput:
        if t.cpu_ms is not None:
            broker = "-" if t.cpu_ms.broker is None else f"{t.cpu_ms.broker:.1f}"
            print(f"{'':>27} {t.batch:>9}  {t.cpu_ms.in_process:>10.1f}  {t.cpu_ms.worker:>14.1f}  "
                  f"{t.cpu_ms.neighbours:>16.1f}  {broker:>12}")
    if not figures.latency:
        return 0
    heads = [f"load {lat.load:g} ({lat.paced_fps:.1f} f/s)" for lat in figures.latency]
    width = max(24, *(len(h) for h in heads))
    print(f"latency budget, ms p50 / p95 / p99, max batch {figures.latency[0].max_batch}:")
    print(f"  {'stage':<36}" + "".join(f"  {h:>{width}}" for h in heads))
    for key, label in BUDGET_LABELS.items():
        cells = [_ms(lat.stages[key].p50, lat.stages[key].p95, lat.stages[key].p99) for lat in figures.latency]
        print(f"  {label:<36}" + "".join(f"  {c:>{width}}" for c in cells))
    cells = [f"{lat.batch_mean:.2f} / {lat.batch_max}" for lat in figures.latency]
    print(f"  {'frames per model run, mean / max':<36}" + "".join(f"  {c:>{width}}" for c in cells))
    return 0


def _add_pipeline_parser(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser("pipeline", help="worker through the broker vs the same work in-process, and the latency "
                                            "budget by stage, same run")
    p.add_argument("--frames", type=positive_int, default=400, help="frames to push through (default 400)")
    p.add_argument("--batch", type=batch_sizes, default=[8],
                   help="comma-separated max batch sizes for the throughput runs; the largest is the worker's max "
                        "batch in the latency runs (default 8)")
    p.add_argument("--load", type=_loads, default=[0.8],
                   help="comma-separated latency runs: publish rate as a share of the in-process rate, e.g. "
                        "0.3,0.5,0.8 (default 0.8)")
    p.add_argument("--rounds", type=positive_int, default=3,
                   help="throughput rounds per batch size, in-process and through the broker alternating; the "
                        "median round is reported (default 3)")
    p.add_argument("--source", help="video file (default <home>/data/vtest.avi)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_bench_pipeline)


# --- bench accuracy --------------------------------------------------------------------------------------------
def _tracker_override(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE, e.g. max_gap_frames=40")
    return key, json.loads(value)


def add_accuracy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--truth", metavar="PATH", action="append", default=[],
                        help="ground-truth JSON, repeatable (default: every benchmarks/ground_truth/*.json)")
    parser.add_argument("--line", action="append", default=[],
                        help="score only this line, repeatable (default: every line of the truth files)")
    parser.add_argument("--footage", metavar="PATH",
                        help="video, when the truth files label one (default: their 'video' under --data-dir)")
    parser.add_argument("--data-dir", metavar="DIR", help="where the labelled videos are (default: <home>/data)")
    parser.add_argument("--model", action="append", default=[],
                        help="NAME[@VERSION|@ALIAS] (default: settings.model.reference); repeatable: each model is "
                             "scored with the same settings and they are compared side by side")
    parser.add_argument("--no-calibration", action="store_true",
                        help="count with the model's boxes as they are, ignoring its box calibration")
    parser.add_argument("--conf", type=float, help="detection confidence threshold (default: tracker low_threshold)")
    parser.add_argument("--iou", type=float, help="NMS IoU threshold (default: the model manifest's)")
    parser.add_argument("--tracker", type=_tracker_override, action="append", default=[], metavar="KEY=VALUE",
                        help="TrackerConfig override, repeatable, e.g. --tracker max_gap_frames=40")
    parser.add_argument("--min-distance-px", type=non_negative_float, help="line hysteresis override")
    parser.add_argument("--min-stay-ms", type=non_negative_int,
                        help="line minimum stay override (0: confirm on the hysteresis band alone)")
    parser.add_argument("--tolerance-frames", type=int, default=DEFAULT_TOLERANCE_FRAMES,
                        help="an emitted crossing matches a label of the same direction within this many frames")
    parser.add_argument("--batch", type=int, default=8, help="frames per model execution")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def cmd_accuracy(settings: Settings, args: argparse.Namespace) -> int:
    reports = [
        run_accuracy(
            settings,
            [Path(p) for p in args.truth] or None,
            footage=Path(args.footage) if args.footage else None,
            model_ref=model,
            lines=args.line or None,
            tracker=dict(args.tracker),
            min_distance_px=args.min_distance_px,
            min_stay_ms=args.min_stay_ms,
            conf=args.conf,
            iou=args.iou,
            tolerance_frames=args.tolerance_frames,
            batch_size=args.batch,
            calibrate=not args.no_calibration,
            data_dir=Path(args.data_dir) if args.data_dir else None,
        )
        for model in args.model or [None]
    ]
    if args.json:
        print(json.dumps(reports[0] if len(reports) == 1 else {"models": reports}))
        return 0
    for report in reports:
        _print_accuracy(report)
    if len(reports) > 1:
        rows = comparison_rows(reports)
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        print("side by side, the same truth and settings:")
        for row in rows:
            print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0


def _print_accuracy(report: dict[str, Any]) -> None:
    width, height = report["input_size"]
    calibration = "box calibration on" if report["box_calibration"] else "no box calibration"
    print(f"model {report['model']} at {width}x{height}, conf {report['detection']['conf']}, "
          f"nms {report['detection']['iou']}, {calibration}; events match within "
          f"+-{report['tolerance_frames']} frames")
    scored = [line for footage in report["footages"] for line in footage["lines"]]
    if scored:  # every line is scored with the same settings
        print(f"lines: hysteresis {scored[0]['min_distance_px']} px, minimum stay {scored[0]['min_stay_ms']} ms, "
              f"anchor confidence >= {scored[0]['min_anchor_confidence']}")
    for footage in report["footages"]:
        print(f"{footage['footage']}: {footage['frames']} frames in {footage['seconds']} s ({footage['fps']} fps)")
        print(f"  {'line':<8} {'in (counted/labelled, error)':<30} {'out (counted/labelled, error)':<30} "
              f"{'precision':>9} {'recall':>7}  bar")
        for line in footage["lines"]:
            cells = []
            for direction in ("in", "out"):
                figures = line["directions"][direction]
                error = "n/a" if figures["error_pct"] is None else f"{figures['error_pct']:+.1f}%"
                cells.append(f"{figures['emitted']}/{figures['truth']} ({error})")
            print(f"  {line['line']:<8} {cells[0]:<30} {cells[1]:<30} {line['precision']:>9.3f} "
                  f"{line['recall']:>7.3f}  {'met' if line['meets_bar'] else 'NOT met'}")
        for line in footage["lines"]:
            for miss in line["misses"]:
                print(f"    {line['line']}: missed          frame {miss['frame']:>5} {miss['direction']:<3}  "
                      f"{miss['note']}")
            for false in line["false_positives"]:
                print(f"    {line['line']}: false positive  frame {false['frame']:>5} {false['direction']:<3}  "
                      f"track {false['track_id']}")
        occupancy = footage.get("occupancy")
        if occupancy:
            print(f"  people in view, {occupancy['tracks']['frames']} hand-counted frames: mean absolute error "
                  f"{occupancy['tracks']['mae']} (confirmed tracks), {occupancy['detections']['mae']} "
                  "(raw person detections)")
    for skipped in report["skipped"]:
        print(f"{skipped['footage']}: missing, its lines not scored (run `{skipped['fetch']}`)")
    summary = report["summary"]
    print(f"all lines: precision {summary['precision']:.3f}, recall {summary['recall']:.3f}; "
          f"{summary['lines_meeting_bar']} of {summary['lines']} lines meet the bar (each direction within 10% "
          "or +-1 under 10 labelled, precision and recall >= 0.9)")


def cmd_bench_count_latency(settings: Settings, args: argparse.Namespace) -> int:
    from camcount.count_latency_bench import bench_count_latency

    figures = bench_count_latency(settings, Path(args.source) if args.source else default_video(settings),
                                  args.frames, args.load, args.poll_ms)
    if args.json:
        print(json.dumps(figures.as_dict()))
        return 0
    print(f"capture -> counted, {figures.crossings} crossings, one camera at {figures.fps} fps "
          f"(load {figures.load} of a {figures.batch1_ms} ms batch-1 inference), polled every {figures.poll_ms} ms")
    print(f"  visible in ClickHouse: p50 {figures.clickhouse_p50_ms} ms, p95 {figures.clickhouse_p95_ms} ms, "
          f"max {figures.clickhouse_max_ms} ms")
    print(f"  visible in Redis:      p50 {figures.redis_p50_ms} ms, p95 {figures.redis_p95_ms} ms, "
          f"max {figures.redis_max_ms} ms")
    return 0


def _add_count_latency_parser(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser("count-latency", help="capture -> crossing visible in ClickHouse and Redis, real processes")
    p.add_argument("--frames", type=positive_int, default=795, help="frames of the footage to replay (default 795)")
    p.add_argument("--load", type=positive_float, default=0.5,
                   help="camera rate as a share of one worker's batch-1 rate (default 0.5)")
    p.add_argument("--poll-ms", type=positive_int, default=100, help="how often ClickHouse and Redis are asked")
    p.add_argument("--source", help="video file (default <home>/data/vtest.avi)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_bench_count_latency)


def _add_accuracy_parser(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser("accuracy", help="counts and event precision/recall against hand-labelled crossings")
    add_accuracy_arguments(p)
    p.set_defaults(handler=cmd_accuracy)


# --- bench agreement -------------------------------------------------------------------------------------------
def cmd_bench_agreement(settings: Settings, args: argparse.Namespace) -> int:
    report = run_agreement(settings, args.model, [Path(p) for p in args.footage] or None, lines=args.lines,
                           seed=args.seed, tolerance_frames=args.tolerance_frames, batch_size=args.batch)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"reference {report['reference']}; {report['lines']} random lines (seed {report['seed']}) per footage; "
          f"crossings match within +-{report['tolerance_frames']} frames. Agreement is not accuracy: models "
          "that err alike agree.")
    for footage in report["footages"]:
        width, height = footage["frame_size"]
        print(f"{footage['footage']}: {footage['frames']} frames {width}x{height}, the reference counted "
              f"{footage['reference_crossings']} crossings")
        for c in footage["candidates"]:
            print(f"  {c['model']}: {c['crossings']} crossings on {c['lines_crossed']} lines crossed; both "
                  f"{c['matched']}, only the reference {c['only_reference']}, only {c['model']} "
                  f"{c['only_candidate']}; precision {c['precision']:.3f}, recall {c['recall']:.3f}")
            for line in c["most_different"]:
                print(f"    {line['line']} {line['start']} -> {line['end']}: both {line['matched']}, "
                      f"only the reference {line['only_reference']}, only the candidate {line['only_candidate']}")
    return 0


def _add_agreement_parser(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser("agreement", help="label-free: a candidate's crossings of random lines against a "
                                             "reference model's, on the same footage")
    p.add_argument("--model", action="append", required=True,
                   help="NAME[@VERSION|@ALIAS], twice or more: the first is the reference, each other a candidate")
    p.add_argument("--footage", action="append", default=[], metavar="PATH",
                   help="video, repeatable (default: vtest.avi and sample.mp4 under <home>/data, those present)")
    p.add_argument("--lines", type=positive_int, default=DEFAULT_AGREEMENT_LINES,
                   help=f"random lines per footage (default {DEFAULT_AGREEMENT_LINES})")
    p.add_argument("--seed", type=int, default=0, help="seed of the random lines: the same seed, the same lines")
    p.add_argument("--tolerance-frames", type=int, default=DEFAULT_TOLERANCE_FRAMES,
                   help="crossings of both models match within this many frames")
    p.add_argument("--batch", type=positive_int, default=8, help="frames per model execution")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_bench_agreement)


# --- bench counting --------------------------------------------------------------------------------------------
def cmd_bench_counting(settings: Settings, args: argparse.Namespace) -> int:
    from counting.bench import bench_counting

    figures = bench_counting(objects=args.objects, frames=args.frames)
    print(json.dumps(figures) if args.json else
          "\n".join(f"{key}: {value}" for key, value in figures.items()))
    return 0


def _add_counting_parser(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser("counting", help="tracker + line/zone counters, ms per frame on synthetic tracks")
    p.add_argument("--objects", type=positive_int, default=20, help="objects per frame (default 20)")
    p.add_argument("--frames", type=positive_int, default=1000, help="frames (default 1000)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_bench_counting)


# --- bench ceiling ---------------------------------------------------------------------------------------------
def _add_ceiling_parser(actions: argparse._SubParsersAction) -> None:
    def run(settings: Settings, args: argparse.Namespace) -> int:
        from camcount.ceiling_bench import bench_ceiling

        f = bench_ceiling(settings, Path(args.source) if args.source else default_video(settings), args.frames,
                          args.batch, None if args.full_size else args.width, args.input_size, args.partitions,
                          args.decode_threads)
        if args.json:
            print(json.dumps(f.as_dict()))
            return 0
        print(f"one worker process, {f.frames} frames of {f.jpeg_width}x{f.jpeg_height} JPEG ({f.jpeg_kbytes} KiB), "
              f"batch {f.batch}, {f.partitions} partitions, {f.decode_threads} decode threads, {f.model} "
              f"({f.model_input}x{f.model_input}); {f.cpu}, {f.cpus} CPUs")
        for name, fps, cores, records, distinct in (
                ("with JPEG decode", f.with_decode_fps, f.with_decode_cpu_cores, f.with_decode_records,
                 f.with_decode_distinct_frames),
                ("without JPEG decode", f.without_decode_fps, f.without_decode_cpu_cores, f.without_decode_records,
                 f.without_decode_distinct_frames)):
            print(f"  {name:<20}: {fps:8.1f} frames/s  ({cores:.2f} CPU cores busy in this process; "
                  f"{records} records back, {distinct} distinct frames)")
        print(f"  JPEG decode alone   : {f.decode_fps_per_core:8.1f} frames/s per core (cv2.imdecode, one thread); "
              f"{f.decode_fps_pool:.1f} frames/s through the worker's decode on {f.decode_threads} threads")
        return 0

    p = actions.add_parser("ceiling", help="frames/s one worker process moves with a near-zero-cost model, with "
                                           "and without JPEG decode (GPU sizing)")
    p.add_argument("--frames", type=positive_int, default=5000, help="frames published per phase (default 5000)")
    p.add_argument("--batch", type=positive_int, default=32, help="worker max batch (default 32)")
    p.add_argument("--width", type=positive_int, default=384,
                   help="scale the footage's frames down to this width before JPEG encoding (default 384)")
    p.add_argument("--full-size", action="store_true", help="keep the footage's frame size instead of --width")
    p.add_argument("--input-size", type=positive_int, default=32,
                   help="the null model's square input: sets the letterbox cost, e.g. 608 for the default model's "
                        "(default 32)")
    p.add_argument("--partitions", type=positive_int, default=4, help="partitions of the bench's topics (default 4)")
    p.add_argument("--decode-threads", type=positive_int,
                   help="worker decode pool threads (default: settings.inference.decode_threads)")
    p.add_argument("--source", help="video file (default <home>/data/vtest.avi)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=run)


# --- bench output-metrics -------------------------------------------------------------------------------------
def _add_output_metrics_parser(actions: argparse._SubParsersAction) -> None:
    def run(settings: Settings, args: argparse.Namespace) -> int:
        from camcount.output_metrics_bench import bench_output_metrics, render

        figures = bench_output_metrics(
            settings, Path(args.source) if args.source else default_video(settings), frames=args.frames,
            real_frames=args.real_frames, batch=args.batch, boxes=args.boxes, rounds=args.rounds,
            real_model=not args.no_real_model,
            progress=(lambda line: None) if args.json else (lambda line: print(f"  {line}", flush=True)))
        print(json.dumps(figures.as_dict()) if args.json else render(figures))
        return 0

    p = actions.add_parser("output-metrics", help="worker frames/s with the output-distribution metrics on vs off "
                                                  "(interleaved rounds, median ratio)")
    p.add_argument("--frames", type=positive_int, default=4000,
                   help="frames per drain with the near-zero-cost model (default 4000)")
    p.add_argument("--real-frames", type=positive_int, default=240,
                   help="frames per drain with the production model (default 240)")
    p.add_argument("--batch", type=positive_int, default=32, help="worker max batch, near-zero-cost model "
                                                                  "(default 32; the production model runs at 8)")
    p.add_argument("--boxes", type=positive_int, default=10,
                   help="boxes per frame the near-zero-cost model outputs (default 10)")
    p.add_argument("--rounds", type=positive_int, default=7,
                   help="on/off rounds with the near-zero-cost model (default 7; the production model gets half, "
                        "at least 3)")
    p.add_argument("--no-real-model", action="store_true", help="skip the production model")
    p.add_argument("--source", help="video file (default <home>/data/vtest.avi)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=run)


# --- bench api ------------------------------------------------------------------------------------------------
def cmd_bench_api(settings: Settings, args: argparse.Namespace) -> int:
    from camcount.api_bench import bench_api, render

    figures = bench_api(settings, Path(args.source) if args.source else default_video(settings), clients=args.clients,
                        duration_s=args.duration, warmup_s=args.warmup, batch=args.batch,
                        cached_run=not args.no_cached_run,
                        progress=(lambda line: None) if args.json else (lambda line: print(f"  {line}", flush=True)))
    print(json.dumps(figures.as_dict()) if args.json else render(figures))
    return 0


def _add_api_parser(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser("api", help="load test of a local `camcount api` against the model in-process, same run")
    p.add_argument("--clients", type=positive_int, default=100, help="concurrent clients (default 100)")
    p.add_argument("--duration", type=positive_float, default=20.0, help="seconds per load run (default 20)")
    p.add_argument("--warmup", type=positive_float, default=5.0,
                   help="seconds of saturation load before it is measured (default 5)")
    p.add_argument("--batch", type=positive_int, help="max batch of the API and in-process (default: api.max_batch)")
    p.add_argument("--source", help="video file to take frames from (default <home>/data/vtest.avi)")
    p.add_argument("--no-cached-run", action="store_true", help="skip the run that repeats images (cache hits)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_bench_api)


def register_parser(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="benchmarks: model, pipeline, accuracy, agreement, counting, api")
    actions = bench.add_subparsers(dest="action", required=True, metavar="ACTION")
    _add_model_parser(actions)
    _add_pipeline_parser(actions)
    _add_accuracy_parser(actions)
    _add_agreement_parser(actions)
    _add_counting_parser(actions)
    _add_ceiling_parser(actions)
    _add_output_metrics_parser(actions)
    _add_count_latency_parser(actions)
    _add_api_parser(actions)
