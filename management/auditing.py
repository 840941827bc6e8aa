"""The one way a management action changes state: :func:`run_audited`, which writes the action's audit row.

The policy when the audit trail (ClickHouse) cannot take a row is deliberate: **an unaudited change is worse than a
delayed one**, so

1. before anything changes, :meth:`AuditLog.ensure_writable` must succeed (retried for a few seconds); otherwise
   the action is refused with ``AuditUnavailable`` (SYS_002 audit-unavailable) and nothing changed;
2. the change runs; if it fails, an ``error`` row (code and message) is appended and the change's own error is
   raised; should that row fail too, it is logged at ERROR level instead and the change's error still wins;
3. after a successful change the ``ok`` row is appended; if ClickHouse went away in the moment between 1 and 3, the
   change stands (it cannot be undone atomically), the row is logged at ERROR level as one JSON line, and
   ``AuditNotRecorded`` (SYS_002 audit-not-recorded) tells the caller the change was made but not recorded.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from sinks.audit import Actor, AuditAction, AuditLog, AuditNotRecorded, AuditUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")


def _nothing(*_: Any) -> None:
    return None


def run_audited(audit: AuditLog, actor: Actor, action: AuditAction, target: str, change: Callable[[], T], *,
                before: Callable[[], Any] = _nothing, after: Callable[[T], Any] = _nothing, reason: str = "") -> T:
    """Carry out ``change`` as ``actor`` and append exactly one audit row for it (see the module docstring).

    ``before()`` is read just before the change and ``after(result)`` just after it; both return JSON-serialisable
    state (None for none). Returns what ``change`` returned.
    """
    audit.ensure_writable()
    state_before: Any = None
    try:
        state_before = before()
        result = change()
    except Exception as exc:
        try:
            audit.record(actor, action, target, error=exc, reason=reason, before=state_before, after=state_before)
        except AuditUnavailable as audit_error:
            log.error("audit row of a failed %s %s by %s not written (%s): %s", action, target, actor.name,
                      audit_error, exc)
        raise
    state_after = after(result)
    try:
        audit.record(actor, action, target, reason=reason, before=state_before, after=state_after)
    except AuditUnavailable as exc:
        row = {"action": str(action), "target": target, "actor": actor.name, "actor_id": actor.id,
               "actor_kind": actor.kind, "source": actor.source, "client": actor.client, "result": "ok",
               "reason": reason, "before": state_before, "after": state_after}
        log.error("AUDIT ROW NOT WRITTEN (the change was made): %s", json.dumps(row, sort_keys=True, default=str))
        raise AuditNotRecorded(
            f"{action} {target} was carried out, but its audit row could not be written ({exc}); the row was logged "
            "instead", remedy="check ClickHouse; do not repeat the action, it took effect") from exc
    return result


def actor_label(actor: Actor) -> str:
    """How an actor is named in stored state (e.g. a key's ``created_by``): ``name`` or ``name (id)``."""
    return f"{actor.name} ({actor.id})" if actor.id else actor.name
