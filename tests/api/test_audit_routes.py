"""The audit trail over real HTTP (admins only): filters, paging without repeats, and bad queries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from sinks.audit import Actor, AuditAction, AuditLog
from tests.services import ApiServer

pytestmark = pytest.mark.integration

DAY = datetime(2023, 3, 14, tzinfo=UTC)
"""A day no other test writes audit rows on."""


class StepClock:
    def __init__(self) -> None:
        self.now = DAY

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=30)
        return self.now


@pytest.fixture(scope="module")
def recorded(api_server: ApiServer) -> list[str]:
    """12 rows on DAY, 30 s apart, by two CLI users: returns their event ids, oldest first."""
    audit = AuditLog.for_settings(api_server.settings)
    audit._clock = StepClock()  # noqa: SLF001 - rows at known times
    ids = []
    for i in range(12):
        actor = Actor("carol" if i % 2 else "dave", "os-user", "cli", "ops-host", id="root")
        action = AuditAction.MODEL_ROLLBACK if i % 3 else AuditAction.EXPERIMENT_START
        ids.append(audit.record(actor, action, f"t{i}", error=ValueError("nope") if i == 5 else None).event_id)
    return ids


def _audit(api_server: ApiServer, **params: object) -> httpx.Response:
    return httpx.get(f"{api_server.url}/api/v1/audit", headers=api_server.headers("admin"), timeout=30,
                     params={"from": DAY.isoformat(), "to": (DAY + timedelta(days=1)).isoformat(), **params})


def test_pages_hold_every_row_once_newest_first(api_server: ApiServer, recorded: list[str]) -> None:
    seen, cursor = [], None
    while True:
        page = _audit(api_server, limit=5, **({"cursor": cursor} if cursor else {})).json()
        seen += [r["eventId"] for r in page["records"]]
        if (cursor := page["nextCursor"]) is None:
            break

    assert seen == list(reversed(recorded))


def test_filters_narrow_the_trail(api_server: ApiServer, recorded: list[str]) -> None:
    assert len(_audit(api_server, actor="carol").json()["records"]) == 6
    assert len(_audit(api_server, action="experiment").json()["records"]) == 4
    assert len(_audit(api_server, action="model.rollback", actor="dave").json()["records"]) == 4
    (failed,) = _audit(api_server, result="error").json()["records"]
    assert (failed["target"], failed["errorCode"], failed["before"]) == ("t5", "ValueError", None)
    window = _audit(api_server, **{"from": (DAY + timedelta(minutes=1)).isoformat(),
                                   "to": (DAY + timedelta(minutes=2, seconds=1)).isoformat()}).json()["records"]
    assert [r["target"] for r in window] == ["t3", "t2", "t1"]


@pytest.mark.parametrize("params, status", [({"from": "last tuesday"}, 400), ({"cursor": "garbage"}, 400),
                                            ({"limit": 0}, 422), ({"result": "maybe"}, 422)])
def test_bad_queries_are_4xx_inf_001(api_server: ApiServer, params: dict, status: int) -> None:
    response = _audit(api_server, **params)

    assert response.status_code == status and response.json()["error"]["code"] == "INF_001"
