"""Adapter: the append-only audit trail in ClickHouse, table ``audit_log`` (infra/clickhouse/050_audit_log.sql).

Every state-changing action of the CLI and the API (``management/``) writes one :class:`AuditRecord`: who
(:class:`Actor`), what (``action``, ``target``), when, from where (``source``, ``client``), the result (with the
error's code and message when it failed), why (``reason``) and the state before and after, as JSON.

Invariants:

- camcount only inserts into ``audit_log``; nothing in camcount updates or deletes a row;
- one row per action: its ``event_id`` is a random UUID chosen before the insert, so an insert retried after a lost
  reply writes the same row again and ReplacingMergeTree keeps one (reads use ``FINAL``);
- every call is retried with :func:`foundation.resilience.backoff` while ClickHouse is away or overloaded, for at
  most ``retry_budget_s``; then it raises :class:`AuditUnavailable` (SYS_002), naming the address.

What happens to an action when the audit log cannot be written is decided in ``management.audited``: the action is
refused before it changes anything (:meth:`AuditLog.ensure_writable`).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal, TypeVar

import tenacity
from clickhouse_driver import Client
from clickhouse_driver.errors import Error as ClickHouseError
from clickhouse_driver.errors import ServerException
from pydantic import BaseModel, ConfigDict

from foundation.clickhouse import (
    ClickHouseUnavailable,
    clickhouse_client,
    clickhouse_database,
    is_unavailable,
    redact_url,
)
from foundation.errors import CamcountError
from foundation.resilience import ResilienceSettings, backoff
from foundation.settings import Settings

log = logging.getLogger(__name__)

AUDIT_TABLE = "audit_log"
DEFAULT_RETRY_BUDGET_S = 5.0
"""How long one audit call keeps retrying an unreachable ClickHouse before it gives up."""
MAX_PAGE = 1000
_UNKNOWN_TABLE_CODES = frozenset({60, 81})  # UNKNOWN_TABLE, UNKNOWN_DATABASE: not provisioned

ActorKind = Literal["os-user", "api-key"]
Source = Literal["cli", "api"]
Result = Literal["ok", "error"]
T = TypeVar("T")


class AuditAction(StrEnum):
    """The actions the audit trail records; ``FAMILY.VERB``, so a filter on ``FAMILY`` selects a family."""

    MODEL_PROMOTE = "model.promote"
    MODEL_ROLLBACK = "model.rollback"
    MODEL_REGISTER = "model.register"
    EXPERIMENT_START = "experiment.start"
    EXPERIMENT_STOP = "experiment.stop"
    KEY_CREATE = "key.create"
    KEY_REVOKE = "key.revoke"


class AuditUnavailable(ClickHouseUnavailable):
    """The audit log cannot be written (ClickHouse away, or its table missing), so the action was refused before it
    changed anything."""

    detail = "audit-unavailable"


class AuditNotRecorded(ClickHouseUnavailable):
    """The action was carried out, but its audit row could not be written afterwards (ClickHouse went away in
    between); the row was logged at ERROR level instead, as one JSON line."""

    detail = "audit-not-recorded"


class _Away(Exception):
    """ClickHouse is away or overloaded for now: the one error ``AuditLog`` retries."""


class InvalidAuditQuery(CamcountError, ValueError):
    """A filter or paging value of an audit query cannot be used (e.g. a cursor that was not issued by a page)."""

    code = "INF_001"
    detail = "invalid-audit-query"


@dataclass(frozen=True)
class Actor:
    """Who acts, and from where: the audit trail's ``actor``, ``actor_id``, ``actor_kind``, ``source`` and ``client``.

    For the CLI: ``--actor`` or the OS user as name, the OS user as id, kind ``os-user``, source ``cli``, client the
    host name. For the API: the key's name and id, kind ``api-key``, source ``api``, client the caller's address.
    """

    name: str
    kind: ActorKind
    source: Source
    client: str
    id: str = ""


class AuditRecord(BaseModel):
    """One row of ``audit_log`` (see the DDL for the meaning of each column); ``before`` / ``after`` are JSON text,
    ``''`` where there is no state."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    at: datetime
    at_ms: int
    actor: str
    actor_id: str
    actor_kind: str
    source: str
    client: str
    action: str
    target: str
    result: str
    error_code: str
    error_message: str
    reason: str
    before: str
    after: str


COLUMNS = tuple(AuditRecord.model_fields)


@dataclass(frozen=True)
class AuditQuery:
    """Filters and paging of :meth:`AuditLog.query`. Times are inclusive-exclusive: ``since <= at < until``.

    ``action`` is an exact action (``model.promote``) or a family (``model``: every ``model.*``). ``cursor`` is the
    ``next_cursor`` of the previous page (opaque); pages run newest first.
    """

    since: datetime | None = None
    until: datetime | None = None
    actor: str | None = None
    action: str | None = None
    target: str | None = None
    result: Result | None = None
    limit: int = 100
    cursor: str | None = None


@dataclass(frozen=True)
class AuditPage:
    records: list[AuditRecord]
    next_cursor: str | None
    """Pass it as ``cursor`` for the next (older) page; None on the last page."""


def _json_text(state: Any) -> str:
    return "" if state is None else json.dumps(state, sort_keys=True, default=str)


def _epoch_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise InvalidAuditQuery(f"{moment.isoformat()} has no time zone; give times with an offset, e.g. 'Z'")
    return int(moment.timestamp() * 1000)


def _record(row: tuple[Any, ...]) -> AuditRecord:
    fields = dict(zip(COLUMNS, row, strict=True))
    at: datetime = fields["at"]
    fields["at"] = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return AuditRecord(**fields)


def encode_cursor(at_ms: int, event_id: str) -> str:
    return base64.urlsafe_b64encode(f"{at_ms}:{event_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    """``(at_ms, event_id)`` of the last row of a page; InvalidAuditQuery for text no page issued."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at_ms, _, event_id = raw.partition(":")
        if not event_id:
            raise ValueError(raw)
        return int(at_ms), event_id
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidAuditQuery(f"cursor {cursor!r} was not issued by an audit page",
                                remedy="pass the next_cursor of the previous page, or none for the first") from exc


class AuditLog:
    """Writes and reads the audit trail (see the module docstring for the invariants).

    ``connect`` opens a client on camcount's database; each call uses its own client and closes it, so one AuditLog
    may be shared by threads. ``address`` (no password) names ClickHouse in errors.
    """

    def __init__(self, connect: Callable[[], Client], resilience: ResilienceSettings, *, address: str = "ClickHouse",
                 database: str = "", retry_budget_s: float = DEFAULT_RETRY_BUDGET_S,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._connect = connect
        self._resilience = resilience
        self._address = address
        self._database = database
        self._retry_budget_s = retry_budget_s
        self._clock = clock
        self._sleep = sleep

    @classmethod
    def for_settings(cls, settings: Settings, retry_budget_s: float = DEFAULT_RETRY_BUDGET_S) -> AuditLog:
        return cls(lambda: clickhouse_client(settings), settings.resilience,
                   address=redact_url(settings.clickhouse_url()), database=clickhouse_database(settings),
                   retry_budget_s=retry_budget_s)

    # --- writing ---------------------------------------------------------------------------------------------
    def ensure_writable(self) -> None:
        """Raise AuditUnavailable unless ClickHouse answers now and holds the audit table.

        Called before an action changes anything, so that an action whose audit row cannot be written is refused
        rather than carried out unaudited.
        """
        def exists(client: Client) -> int:
            return client.execute("SELECT count() FROM system.tables WHERE database = currentDatabase() "
                                  "AND name = %(table)s", {"table": AUDIT_TABLE})[0][0]

        if not self._run("audit log check", exists):
            raise self._missing_table()

    def record(self, actor: Actor, action: str, target: str, *, error: BaseException | None = None, reason: str = "",
               before: Any = None, after: Any = None) -> AuditRecord:
        """Append one row: the action succeeded unless ``error`` is given (its code and one-line message are kept).

        ``before`` and ``after`` are JSON-serialisable states (None: no state). Returns the row written.
        """
        now = self._clock()
        error_code = getattr(error, "code", type(error).__name__) if error is not None else ""
        if error is None:
            message = ""
        elif isinstance(error, CamcountError):
            message = error.one_line()
        else:
            message = " ".join(str(error).split()) or type(error).__name__
        record = AuditRecord(
            event_id=str(uuid.uuid4()), at=now.replace(microsecond=0), at_ms=int(now.timestamp() * 1000),
            actor=actor.name, actor_id=actor.id, actor_kind=actor.kind, source=actor.source, client=actor.client,
            action=str(action), target=target, result="ok" if error is None else "error", error_code=error_code,
            error_message=message, reason=reason, before=_json_text(before), after=_json_text(after))
        row = record.model_dump()
        row["at"] = record.at.astimezone(UTC).replace(tzinfo=None)  # naive UTC, as the DateTime('UTC') column holds

        def insert(client: Client) -> None:
            client.execute(f"INSERT INTO {AUDIT_TABLE} ({', '.join(COLUMNS)}) VALUES", [row])

        self._run(f"audit record of {action} {target}", insert)
        log.info("audit: %s %s by %s (%s, %s): %s", action, target, actor.name, actor.source, actor.client,
                 record.result if error is None else f"error {error_code}")
        return record

    # --- reading ---------------------------------------------------------------------------------------------
    def query(self, query: AuditQuery) -> AuditPage:
        """One page of rows matching ``query``, newest first (ties broken by event id)."""
        if not 1 <= query.limit <= MAX_PAGE:
            raise InvalidAuditQuery(f"limit {query.limit} is out of range: give 1 to {MAX_PAGE}")
        where, params = ["1"], {"limit": query.limit + 1}
        if query.since is not None:
            where.append("at_ms >= %(since_ms)s")
            params["since_ms"] = _epoch_ms(query.since)
        if query.until is not None:
            where.append("at_ms < %(until_ms)s")
            params["until_ms"] = _epoch_ms(query.until)
        for column in ("actor", "target", "result"):
            value = getattr(query, column)
            if value is not None:
                where.append(f"{column} = %({column})s")
                params[column] = value
        if query.action is not None:
            if "." in query.action:
                where.append("action = %(action)s")
                params["action"] = query.action
            else:
                where.append("startsWith(action, %(family)s)")
                params["family"] = f"{query.action}."
        if query.cursor is not None:
            params["cursor_ms"], params["cursor_id"] = decode_cursor(query.cursor)
            where.append("(at_ms < %(cursor_ms)s OR (at_ms = %(cursor_ms)s AND event_id < %(cursor_id)s))")
        sql = (f"SELECT {', '.join(COLUMNS)} FROM {AUDIT_TABLE} FINAL WHERE {' AND '.join(where)} "
               "ORDER BY at_ms DESC, event_id DESC LIMIT %(limit)s")
        rows = self._run("audit log query", lambda client: client.execute(sql, params))
        records = [_record(row) for row in rows[: query.limit]]
        more = len(rows) > query.limit
        return AuditPage(records, encode_cursor(records[-1].at_ms, records[-1].event_id) if more else None)

    # --- plumbing --------------------------------------------------------------------------------------------
    def _run(self, what: str, call: Callable[[Client], T]) -> T:
        """``call`` on a fresh client, retried with backoff while ClickHouse is away, for ``retry_budget_s`` at most.

        Raises AuditUnavailable when ClickHouse stays away or the table is missing; any other error (a bug in the
        SQL) propagates as it is.
        """
        stop = threading.Event()
        retrying = backoff(self._resilience, (_Away,), stop, sleep=self._sleep, what=what).copy(
            stop=tenacity.stop_when_event_set(stop) | tenacity.stop_before_delay(self._retry_budget_s))
        try:
            return retrying(self._attempt, call)
        except _Away as exc:
            raise AuditUnavailable(
                f"the audit log at {self._address} cannot be reached ({exc})",
                remedy="start ClickHouse (`camcount stack up`) or set CLICKHOUSE_URL, then try again") from exc

    def _attempt(self, call: Callable[[Client], T]) -> T:
        client = self._connect()  # clickhouse-driver connects lazily, on the first query
        try:
            return call(client)
        except (ClickHouseError, OSError, EOFError) as exc:
            if isinstance(exc, ServerException) and exc.code in _UNKNOWN_TABLE_CODES:
                raise self._missing_table() from exc
            if is_unavailable(exc):
                raise _Away(" ".join(str(exc).split()[:12])) from exc
            raise
        finally:
            client.disconnect()

    def _missing_table(self) -> AuditUnavailable:
        where = f"database {self._database!r} at {self._address}" if self._database else self._address
        return AuditUnavailable(f"the audit table {AUDIT_TABLE!r} does not exist in {where}",
                                remedy="run `camcount provision` (or `camcount stack up`) to create it")
