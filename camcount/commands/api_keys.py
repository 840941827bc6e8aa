"""``camcount api keys ...``: API keys from the command line, so the first admin key can be made without the
bootstrap key (``CAMCOUNT_API_ADMIN_KEY``).

``create`` prints the key's secret once (it is stored only as a SHA-256); ``list`` never shows secrets; ``revoke``
is final and reaches every API replica within ``api.key_refresh_s``. ``create`` and ``revoke`` are audited as the
OS user, or ``--actor NAME``.
"""

from __future__ import annotations

import argparse
import json

from camcount.commands.actor import add_actor_option, cli_actor
from foundation.settings import Settings


def _stores(settings: Settings):
    from sinks.api_keys import ApiKeyStore
    from sinks.audit import AuditLog

    return ApiKeyStore.for_settings(settings), AuditLog.for_settings(settings)


def cmd_create(settings: Settings, args: argparse.Namespace) -> int:
    from management.keys import create

    store, audit = _stores(settings)
    new = create(store, audit, cli_actor(args), args.name, args.role)
    if args.json:
        print(json.dumps({**new.key.public(), "secret": new.secret}))
        return 0
    print(f"created API key {new.key.key_id} ({new.key.name}, role {new.key.role})")
    print(f"secret (shown only now; store it safely): {new.secret}")
    return 0


def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    from management.keys import list_keys

    store, _ = _stores(settings)
    keys = list_keys(store)
    if args.json:
        print(json.dumps([key.public() for key in keys]))
        return 0
    if not keys:
        print("no API keys: create one with `camcount api keys create --name NAME --role ROLE`")
    for key in keys:
        state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M:%S} by {key.revoked_by}" if key.revoked else "valid"
        print(f"{key.key_id}  {key.role:<11} {key.name:<24} created {key.created_at:%Y-%m-%d %H:%M:%S} UTC by "
              f"{key.created_by}  {state}")
    return 0


def cmd_revoke(settings: Settings, args: argparse.Namespace) -> int:
    from management.keys import revoke

    store, audit = _stores(settings)
    key = revoke(store, audit, cli_actor(args), args.key_id)
    print(f"revoked API key {key.key_id} ({key.name}); API replicas refuse it within "
          f"{settings.api.key_refresh_s:g} s")
    return 0


def register_parser(api_actions: argparse._SubParsersAction) -> None:
    """Adds ``keys {create,list,revoke}`` under ``camcount api`` (``api_actions``: its subparsers)."""
    from sinks.api_keys import KEY_ROLES

    keys = api_actions.add_parser("keys", help="API keys: create (prints the secret once), list, revoke")
    actions = keys.add_subparsers(dest="keys_action", required=True, metavar="ACTION")
    p = actions.add_parser("create", help="create a key and print its secret once (audited)")
    p.add_argument("--name", required=True, help="who or what the key is for, e.g. grafana or ci-bot")
    p.add_argument("--role", required=True, choices=KEY_ROLES, help="what the key may do")
    p.add_argument("--json", action="store_true", help="print the key and its secret as one JSON object")
    add_actor_option(p)
    p.set_defaults(handler=cmd_create)
    p = actions.add_parser("list", help="every key with its role and state (no secrets)")
    p.add_argument("--json", action="store_true", help="print the keys as a JSON array")
    p.set_defaults(handler=cmd_list)
    p = actions.add_parser("revoke", help="revoke a key for good (audited)")
    p.add_argument("key_id", help="the key's id, e.g. key_0123456789abcdef (`camcount api keys list`)")
    add_actor_option(p)
    p.set_defaults(handler=cmd_revoke)
