"""``GET /api/v1/audit``: the audit trail (role ``admin``): who did what, when, from where, with what result, and the
state before and after. Newest first; filters ``from`` / ``to`` (ISO-8601; without an offset: UTC), ``actor``,
``action`` (``model.promote``, or a family such as ``model``), ``target``, ``result`` (``ok`` / ``error``); paging by
``limit`` and the previous page's ``nextCursor``.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from api.auth import Principal, Role, requires
from api.errors import error_responses
from api.services import ApiServices, services_of
from sinks.audit import MAX_PAGE, AuditQuery, AuditRecord, InvalidAuditQuery
from sinks.count_queries import EARLIEST, LATEST

router = APIRouter(tags=["audit"])

ERRORS = error_responses(400, 401, 403, 422, 429, 503)


class AuditEntry(BaseModel):
    eventId: str  # noqa: N815 - the API's JSON names
    at: str = Field(description="when the action finished, ISO-8601 UTC")
    atMs: int  # noqa: N815
    actor: str = Field(description="the API key's name, or the OS user (or --actor) for the CLI")
    actorId: str = Field(description="the API key's id, or the OS user who ran the command")  # noqa: N815
    actorKind: str = Field(description="api-key or os-user")  # noqa: N815
    source: str = Field(description="api or cli")
    client: str = Field(description="the caller's address, or the CLI's host name")
    action: str
    target: str
    result: str = Field(description="ok or error")
    errorCode: str  # noqa: N815
    errorMessage: str  # noqa: N815
    reason: str
    before: Any = Field(description="state before the action (JSON), null where there is none")
    after: Any = Field(description="state after the action (JSON), null where there is none")


class AuditPage(BaseModel):
    records: list[AuditEntry]
    nextCursor: str | None  # noqa: N815


def _instant(text: str | None, name: str) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError as exc:
        raise InvalidAuditQuery(f"{name} {text[:64]!r} is not an ISO-8601 time",
                                remedy="send e.g. 2024-05-01T00:00:00Z") from exc
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    if not EARLIEST <= moment <= LATEST:
        raise InvalidAuditQuery(f"{name} {text[:64]!r} is outside {EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d}")
    return moment


def _entry(record: AuditRecord) -> dict[str, Any]:
    return {"eventId": record.event_id, "at": record.at.isoformat(), "atMs": record.at_ms, "actor": record.actor,
            "actorId": record.actor_id, "actorKind": record.actor_kind, "source": record.source,
            "client": record.client, "action": record.action, "target": record.target, "result": record.result,
            "errorCode": record.error_code, "errorMessage": record.error_message, "reason": record.reason,
            "before": json.loads(record.before) if record.before else None,
            "after": json.loads(record.after) if record.after else None}


@router.get("/api/v1/audit", response_model=AuditPage, responses=ERRORS, summary="The audit trail, newest first")
async def audit_trail(start: str | None = Query(None, alias="from", description="earliest time, ISO-8601"),
                      end: str | None = Query(None, alias="to", description="end (exclusive), ISO-8601"),
                      actor: str | None = Query(None), action: str | None = Query(None, examples=["model.promote"]),
                      target: str | None = Query(None), result: Literal["ok", "error"] | None = Query(None),
                      limit: int = Query(100, ge=1, le=MAX_PAGE), cursor: str | None = Query(None),
                      _: Principal = Depends(requires(Role.ADMIN)),
                      services: ApiServices = Depends(services_of)) -> dict[str, Any]:
    query = AuditQuery(since=_instant(start, "from"), until=_instant(end, "to"), actor=actor, action=action,
                       target=target, result=result, limit=limit, cursor=cursor)
    page = await asyncio.to_thread(services.audit.query, query)
    return {"records": [_entry(record) for record in page.records], "nextCursor": page.next_cursor}
