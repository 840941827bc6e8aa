"""``camcount analyze``: offline counting of a video file, in-process (no Kafka, no Faust, no databases)."""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import ExitStack

from camcount.commands.argtypes import positive_int
from foundation.errors import UsageError
from foundation.settings import Settings


def cmd_analyze(settings: Settings, args: argparse.Namespace) -> int:
    from camcount.offline import analyze
    from counting.config import load_camera_configs
    from models.loading import load_detector
    from producers.encoding import JPEG_QUALITY
    from producers.sources import FrameSource

    source = FrameSource(args.source)
    try:
        configs = load_camera_configs(args.config)
    except UnicodeDecodeError as exc:
        raise UsageError(f"{args.config}: not a camera config YAML (not UTF-8 text)") from exc
    config = configs.for_camera(args.camera_id)
    detector = load_detector(settings, args.model, max_batch=args.batch)
    total = source.frame_count()

    def progress(done: int, elapsed: float) -> None:
        if args.quiet:
            return
        share = f"/{total}" if total else ""
        print(f"\r  analysed {done}{share} frames ({done / max(elapsed, 1e-9):.1f} fps)", end="", file=sys.stderr,
              flush=True)

    with ExitStack() as files:
        per_frame = files.enter_context(open(args.per_frame, "w")) if args.per_frame else None
        events = files.enter_context(open(args.events, "w")) if args.events else None
        result = analyze(source, config, detector, batch_size=args.batch,
                         jpeg_quality=None if args.no_jpeg else JPEG_QUALITY,
                         per_frame=per_frame, events=events, progress=progress,
                         conf=settings.model.confidence_threshold, iou=settings.model.nms_threshold)
    if not args.quiet:
        print(file=sys.stderr)
    report = result.as_json(config)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{args.source}: {report['frames']} frames, model {detector.name}@{detector.version}")
    for name, line in report["lines"].items():
        by_class = ", ".join(f"{k} in={v['in']} out={v['out']}" for k, v in sorted(line["by_class"].items()))
        print(f"  line {name}: in={line['in']} out={line['out']}" + (f"  ({by_class})" if by_class else ""))
    for name, zone in report["zones"].items():
        print(f"  zone {name}: max occupancy {zone['max_occupancy']}, entries {zone['entries']}, "
              f"exits {zone['exits']}, mean dwell {zone['mean_dwell_s']} s")
    return 0


def register_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="count a video file offline (same core as streaming)")
    p.add_argument("source", help="video file or image folder")
    p.add_argument("--config", required=True, help="camera config YAML (lines, zones, classes)")
    p.add_argument("--camera-id", default="offline", help="which camera of the config to use (default: defaults)")
    p.add_argument("--model", help="NAME[@VERSION|@ALIAS] (default: settings.model.reference)")
    p.add_argument("--batch", type=positive_int, default=8, help="frames per model execution")
    p.add_argument("--no-jpeg", action="store_true",
                   help="skip the JPEG round trip that makes offline input identical to streaming input")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--per-frame", metavar="PATH",
                   help="write one JSON line per frame: confirmed tracks per class (people in view), zone "
                        "occupancy, raw detections per class")
    p.add_argument("--events", metavar="PATH", help="write one JSON line per crossing")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(handler=cmd_analyze)
