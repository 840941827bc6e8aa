"""``camcount api``: serve the HTTP API (FastAPI on uvicorn). ``camcount api`` and ``camcount api serve`` both serve;
other ``camcount api ACTION`` subcommands (e.g. ``keys``) come from the modules listed in :func:`_api_actions`.

A module adding an action exposes ``register_parser(actions)``: it receives the ``api`` subparsers, adds its
parser there and sets its own ``handler`` default (``handler(settings, args) -> int``), which replaces the serving
handler for that action.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable

from camcount.commands.argtypes import positive_int
from foundation.errors import UsageError
from foundation.settings import Settings

log = logging.getLogger(__name__)

ApiActionRegistrar = Callable[[argparse._SubParsersAction], None]


def cmd_api_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app

    overrides = {key: value for key, value in (("host", args.host), ("port", args.port)) if value is not None}
    if overrides:
        settings = settings.model_copy(update={"api": settings.api.model_copy(update=overrides)})
    if not 1 <= settings.api.port <= 65535:
        raise UsageError(f"--port {settings.api.port} is not a TCP port", remedy="give 1..65535")
    app = create_app(settings)
    log.info("camcount api on http://%s:%d (OpenAPI at /openapi.json, docs at /docs)", settings.api.host,
             settings.api.port)
    uvicorn.run(app, host=settings.api.host, port=settings.api.port, log_config=None, access_log=args.access_log,
                timeout_graceful_shutdown=10, server_header=False)
    return 0


def _add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to listen on (default: settings api.host, 127.0.0.1)")
    parser.add_argument("--port", type=positive_int, help="port to listen on (default: settings api.port, 8080)")
    parser.add_argument("--access-log", action="store_true",
                        help="log every request (the ClickHouse request log records them anyway)")


def _api_actions() -> list[ApiActionRegistrar]:
    """Modules adding ``camcount api ACTION`` subcommands (see the module docstring)."""
    from camcount.commands import api_keys

    return [api_keys.register_parser]


def register_parser(sub: argparse._SubParsersAction) -> None:
    api = sub.add_parser("api", help="serve the HTTP API (inference, Open Inference Protocol v2, status, counts, "
                                     "model management); `camcount api serve` is the same")
    _add_serve_arguments(api)
    api.set_defaults(handler=cmd_api_serve)
    actions = api.add_subparsers(dest="api_action", metavar="[ACTION]")
    serve = actions.add_parser("serve", help="serve the HTTP API (the default action)")
    _add_serve_arguments(serve)
    serve.set_defaults(handler=cmd_api_serve)
    for register in _api_actions():
        register(actions)
