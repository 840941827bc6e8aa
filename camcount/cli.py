"""The ``camcount`` command line: one subcommand per part of the data flow."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from pydantic import ValidationError

from camcount.commands.argtypes import camera_id, log_level, non_negative_float, positive_int
from foundation.errors import CamcountError
from foundation.logs import configure_logging
from foundation.settings import Settings, load_settings, validation_problems


# --- stack ---------------------------------------------------------------------------------------------------
def cmd_stack(settings: Settings, args: argparse.Namespace) -> int:
    from camcount.stack import LocalStack

    stack = LocalStack(settings)
    if args.action == "up":
        stack.up(progress=lambda line: print(f"  {line}", flush=True))
    elif args.action == "down":
        stack.down()
    statuses = stack.status()
    for s in statuses:
        state = "ready" if s.ready else "down"
        origin = "managed" if s.managed else "external"
        print(f"{s.name:<11} {state:<6} {origin:<9} {s.address:<38} {s.detail}")
    if args.action == "status":
        return 0 if all(s.ready for s in statuses) else 1
    return 0


# --- provision -----------------------------------------------------------------------------------------------
def cmd_provision(settings: Settings, args: argparse.Namespace) -> int:
    from foundation.provision import provision, wait_for_services

    wait_for_services(settings, timeout_s=args.wait)
    provision(settings, progress=lambda line: print(f"  {line}", flush=True))
    return 0


# --- ingest --------------------------------------------------------------------------------------------------
def cmd_ingest(settings: Settings, args: argparse.Namespace) -> int:
    from foundation.resilience import circuit_breaker
    from producers.experiment_assignment import ExperimentAssigner
    from producers.ingest import CameraIngestor
    from producers.sources import FrameSource
    from sinks.experiment_store import ExperimentStore

    source = FrameSource(args.source, folder_fps=args.fps or 1.0)
    assigner = ExperimentAssigner(ExperimentStore.for_settings(settings),
                                  breaker=circuit_breaker("redis-experiments", settings.resilience), background=True)
    ingestor = CameraIngestor(settings, args.camera_id, source, fps=args.fps, loop=args.loop,
                              max_frames=args.max_frames, assign_variant=assigner, first_seq=args.first_seq)
    ingestor.install_signal_handlers()
    stats = ingestor.run()
    print(f"camera {args.camera_id}: {stats.delivered} frames delivered, {stats.failed} failed, "
          f"{stats.dropped} dropped (producer buffer full)")
    return 0 if stats.failed == 0 and stats.dropped == 0 else 1


# --- infer ---------------------------------------------------------------------------------------------------
def cmd_infer(settings: Settings, args: argparse.Namespace) -> int:
    import signal

    from foundation.ops_http import OpsServer
    from foundation.process_metrics import register_resource_metrics
    from foundation.resilience import BreakerMetrics
    from stream_apps.inference.metrics import FallbackCollector, InferenceMetrics, LoadedModelsCollector
    from stream_apps.inference.routing import load_routes
    from stream_apps.inference.worker import InferenceWorker

    metrics = InferenceMetrics()
    register_resource_metrics(metrics.registry)
    routes = load_routes(settings, BreakerMetrics(metrics.registry))
    metrics.registry.register(LoadedModelsCollector(routes.detectors))
    metrics.registry.register(FallbackCollector(routes.fallback))
    worker = InferenceWorker(settings, routes, metrics)
    signal.signal(signal.SIGINT, worker.stop)
    signal.signal(signal.SIGTERM, worker.stop)
    ops = None
    if settings.inference.metrics_port:
        ops = OpsServer(settings.inference.metrics_port, metrics.registry, worker.ready.is_set,
                        {"/models": routes.status})
        ops.start()
    try:
        stats = worker.run()
    finally:
        if ops is not None:
            ops.stop()
    print(f"inference worker stopped: {stats.frames_ok} frames, {stats.batches} batches, "
          f"{stats.dead_letters} dead letters")
    return 0


# --- count / sink --------------------------------------------------------------------------------------------
def cmd_count(settings: Settings, args: argparse.Namespace) -> int:
    import logging
    import threading

    from prometheus_client import CollectorRegistry

    from foundation.kafka import wait_for_broker
    from foundation.process_metrics import register_resource_metrics
    from foundation.resilience import BreakerMetrics
    from stream_apps.counting_app import run_worker

    # As the inference worker and ingest do: an unreachable broker is one line naming it, not an aiokafka traceback.
    wait_for_broker(settings.kafka_bootstrap(), timeout_s=15, client_config=settings.kafka.client_config)
    registry = CollectorRegistry()  # one /metrics for the counting app and its sink
    register_resource_metrics(registry)
    if args.no_sink:
        run_worker(settings, registry)
        return 0
    breakers = BreakerMetrics(registry)
    sink = _clickhouse_sink(settings, registry, breakers)
    sink_failed = threading.Event()

    def run_sink() -> None:
        try:
            sink.run()
        except Exception as exc:  # stops alone: counting goes on, its outputs wait in Kafka for a sink to return
            where = exc.one_line() if isinstance(exc, CamcountError) else repr(exc)
            logging.getLogger("camcount.sink").error(
                "ClickHouse sink stopped (counting goes on; camcount_sink_up is 0): %s; fix the cause and restart "
                "`camcount count`, or run `camcount sink` beside it", where,
                exc_info=not isinstance(exc, CamcountError))
            sink_failed.set()

    thread = threading.Thread(target=run_sink, name="clickhouse-sink", daemon=True)
    thread.start()
    try:
        run_worker(settings, registry, breakers)
    finally:
        sink.stop()
        thread.join(30)
    return 1 if sink_failed.is_set() else 0


def cmd_sink(settings: Settings, args: argparse.Namespace) -> int:
    import signal

    sink = _clickhouse_sink(settings)
    signal.signal(signal.SIGINT, sink.stop)
    signal.signal(signal.SIGTERM, sink.stop)
    sink.run()
    return 0


def _clickhouse_sink(settings: Settings, registry=None, breakers=None):
    from sinks.kafka_sink import ClickHouseSink
    from sinks.redis_live import LiveCrossingTotals

    return ClickHouseSink(settings, live_totals=LiveCrossingTotals(settings.redis_url(), settings.redis.key_prefix),
                          registry=registry, breakers=breakers)


# --- parser --------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="camcount", description=__doc__)
    parser.add_argument("--log-level", type=log_level,
                        help="DEBUG, INFO, WARNING, ERROR or CRITICAL (default: settings.log_level)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    stack = sub.add_parser("stack", help="start (then provision), check or stop the local broker, ClickHouse and Redis")
    stack.add_argument("action", choices=("up", "status", "down"))
    stack.set_defaults(handler=cmd_stack)

    provision = sub.add_parser(
        "provision", help="create the topics and apply the ClickHouse DDL on the configured services (idempotent)")
    provision.add_argument("--wait", type=non_negative_float, default=60.0,
                           help="seconds to wait for the broker and ClickHouse to answer (default 60)")
    provision.set_defaults(handler=cmd_provision)

    ingest = sub.add_parser("ingest", help="publish a camera's frames (video file, RTSP/HTTP, image folder)")
    ingest.add_argument("--camera-id", required=True, type=camera_id, help="non-empty, no whitespace")
    ingest.add_argument("--source", required=True, help="video file, image folder or rtsp/http URL")
    ingest.add_argument("--fps", type=non_negative_float, default=None,
                        help="publish rate; default: the source's own rate; 0: as fast as possible "
                             "(a live stream is read at its own rate and the frames in between are dropped)")
    ingest.add_argument("--loop", action="store_true", help="replay a file source forever")
    ingest.add_argument("--max-frames", type=positive_int, default=None,
                        help="stop after publishing this many frames")
    ingest.add_argument("--first-seq", type=int, default=None,
                        help="frame sequence number of the first frame (default: the run's start time in ms, "
                             "so sequences keep increasing across restarts)")
    ingest.set_defaults(handler=cmd_ingest)

    infer = sub.add_parser("infer", help="run an inference worker (member of the frames consumer group)")
    infer.set_defaults(handler=cmd_infer)

    count = sub.add_parser("count", help="run the Faust counting app (and the ClickHouse sink)")
    count.add_argument("--no-sink", action="store_true", help="don't run the ClickHouse sink in this process")
    count.set_defaults(handler=cmd_count)

    sink = sub.add_parser("sink", help="run the ClickHouse sink alone")
    sink.set_defaults(handler=cmd_sink)

    for register in _extra_commands():
        register(sub)
    return parser


def _extra_commands() -> list[Callable[[argparse._SubParsersAction], None]]:
    from camcount.commands import ab, analyze, api, bench, demo, models, monitor

    return [models.register_parser, analyze.register_parser, bench.register_parser, ab.register_parser,
            demo.register_parser, api.register_parser, monitor.register_parser]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except ValidationError as exc:
        print(f"camcount: invalid settings: {validation_problems(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # e.g. CAMCOUNT_CONFIG naming a missing or unparsable file
        print(f"camcount: invalid settings: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    configure_logging(args.log_level or settings.log_level)
    try:
        return args.handler(settings, args)
    except KeyboardInterrupt:
        return 130
    except (CamcountError, OSError) as exc:
        print(f"camcount {args.command}: error: {_describe(exc)}", file=sys.stderr)
        return 2


def _describe(exc: CamcountError | OSError) -> str:
    """One line: a camcount error's message and remedy; an OS error on a file names the file, e.g.
    ``/tmp: Is a directory``."""
    if isinstance(exc, CamcountError):
        return exc.one_line()
    if exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc)


if __name__ == "__main__":
    sys.exit(main())
