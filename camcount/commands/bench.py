"""``camcount bench ...``: measurements, one sub-action per thing measured, each with its own parser and handler."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from camcount.accuracy import DEFAULT_TOLERANCE_FRAMES, DEFAULT_TRUTH, run_accuracy
from camcount.commands.argtypes import positive_float, positive_int
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
def cmd_bench_pipeline(settings: Settings, args: argparse.Namespace) -> int:
    from camcount.pipeline_bench import bench_pipeline

    figures = bench_pipeline(settings, Path(args.source) if args.source else default_video(settings), args.frames,
                             args.batch, args.load)
    if args.json:
        print(json.dumps(figures.as_dict()))
        return 0
    print(f"{figures.frames} frames, batch {figures.batch}, {figures.provider}")
    print(f"  in-process loop : {figures.in_process_fps:7.1f} frames/s")
    print(f"  broker pipeline : {figures.pipeline_fps:7.1f} frames/s  (ratio {figures.ratio:.3f})")
    print(f"  end-to-end at {figures.paced_fps:.1f} frames/s: p50 {figures.e2e_p50_ms:.0f} ms, "
          f"p95 {figures.e2e_p95_ms:.0f} ms")
    return 0


def _add_pipeline_parser(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser("pipeline", help="worker through the broker vs the same work in-process, same run")
    p.add_argument("--frames", type=positive_int, default=400, help="frames to push through (default 400)")
    p.add_argument("--batch", type=positive_int, default=8, help="max batch (default 8)")
    p.add_argument("--load", type=positive_float, default=0.8,
                   help="latency phase: publish rate as a share of the in-process rate (default 0.8)")
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
    parser.add_argument("--truth", metavar="PATH",
                        help="ground-truth JSON (default: benchmarks/ground_truth/vtest_L1.json)")
    parser.add_argument("--line", help="which line of the truth file (default: its only line)")
    parser.add_argument("--footage", metavar="PATH", help="video (default: the truth's 'video' under <home>/data)")
    parser.add_argument("--model", help="NAME[@VERSION|@ALIAS] (default: settings.model.reference)")
    parser.add_argument("--conf", type=float, help="detection confidence threshold (default: tracker low_threshold)")
    parser.add_argument("--iou", type=float, help="NMS IoU threshold (default: the model manifest's)")
    parser.add_argument("--tracker", type=_tracker_override, action="append", default=[], metavar="KEY=VALUE",
                        help="TrackerConfig override, repeatable, e.g. --tracker max_gap_frames=40")
    parser.add_argument("--min-distance-px", type=float, help="line hysteresis override")
    parser.add_argument("--tolerance-frames", type=int, default=DEFAULT_TOLERANCE_FRAMES,
                        help="an emitted crossing matches a label of the same direction within this many frames")
    parser.add_argument("--batch", type=int, default=8, help="frames per model execution")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def cmd_accuracy(settings: Settings, args: argparse.Namespace) -> int:
    report = run_accuracy(
        settings,
        Path(args.truth) if args.truth else DEFAULT_TRUTH,
        footage=Path(args.footage) if args.footage else None,
        model_ref=args.model,
        line=args.line,
        tracker=dict(args.tracker),
        min_distance_px=args.min_distance_px,
        conf=args.conf,
        iou=args.iou,
        tolerance_frames=args.tolerance_frames,
        batch_size=args.batch,
    )
    if args.json:
        print(json.dumps(report))
        return 0
    accuracy = report["accuracy"]
    width, height = report["input_size"]
    print(f"{report['footage']}: {report['frames']} frames in {report['seconds']} s ({report['fps']} fps), "
          f"model {report['model']} at {width}x{height}, conf {report['detection']['conf']}, "
          f"nms {report['detection']['iou']}")
    for direction, figures in accuracy["directions"].items():
        error = "n/a" if figures["error_pct"] is None else f"{figures['error_pct']:+.1f}%"
        print(f"  line {accuracy['line']} {direction:<3}: {figures['emitted']} counted, {figures['truth']} labelled "
              f"({error})")
    print(f"  events within +-{accuracy['tolerance_frames']} frames: {accuracy['matched']} matched, "
          f"precision {accuracy['precision']:.3f}, recall {accuracy['recall']:.3f}")
    for miss in accuracy["misses"]:
        print(f"  missed          frame {miss['frame']:>5} {miss['direction']:<3}  {miss['note']}")
    for false in accuracy["false_positives"]:
        print(f"  false positive  frame {false['frame']:>5} {false['direction']:<3}  track {false['track_id']}")
    print(f"  bar (each direction within 10%, precision and recall >= 0.9): "
          f"{'met' if accuracy['meets_bar'] else 'NOT met'}")
    return 0


def _add_accuracy_parser(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser("accuracy", help="counts and event precision/recall against hand-labelled crossings")
    add_accuracy_arguments(p)
    p.set_defaults(handler=cmd_accuracy)


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


def register_parser(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="benchmarks: model, pipeline, accuracy, counting")
    actions = bench.add_subparsers(dest="action", required=True, metavar="ACTION")
    _add_model_parser(actions)
    _add_pipeline_parser(actions)
    _add_accuracy_parser(actions)
    _add_counting_parser(actions)
