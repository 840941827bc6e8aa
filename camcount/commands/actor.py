"""Who a state-changing command acts as, for the audit trail: ``--actor NAME`` or the OS user.

Every command that changes state (``models promote|rollback|register|import-darknet|quantize``,
``ab start|stop|promote|guard``, ``api keys create|revoke``) takes ``--actor NAME``. The audit row records ``NAME``
(default: the OS user running the command) as the actor, the OS user always as ``actor_id`` (so a name given with
``--actor`` is never the only trace of who ran it), ``cli`` as the source and the host name as the client.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import socket

from sinks.audit import Actor

_ACTOR = re.compile(r"[^\x00-\x1f\x7f]{1,100}")


def actor_name(text: str) -> str:
    """argparse type: 1 to 100 printable characters, not only spaces."""
    if not _ACTOR.fullmatch(text) or not text.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not a usable actor name: give 1 to 100 printable characters")
    return text.strip()


def add_actor_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--actor", type=actor_name, default=None,
                        help="who to record in the audit log as having done this (default: the OS user)")


def os_user() -> str:
    """The login name of the OS user running this process; ``uid N`` where the system has no name for it."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry
        return f"uid {os.getuid()}"


def cli_actor(args: argparse.Namespace) -> Actor:
    """The actor of a CLI command: ``--actor`` or the OS user; source ``cli``; client this host's name."""
    user = os_user()
    return Actor(name=getattr(args, "actor", None) or user, kind="os-user", source="cli",
                 client=socket.gethostname(), id=user)
