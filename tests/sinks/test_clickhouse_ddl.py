"""The ClickHouse DDL in infra/clickhouse: it applies repeatedly on the stack's server (ClickHouse 18.16) and on
modern ClickHouse (chDB), and what it derives from crossing events counts an event written twice once."""

import json
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from chdb.session import Session
from clickhouse_driver import Client

from camcount.settings import Settings
from camcount.stack import (
    CLICKHOUSE_DDL_DIR,
    apply_clickhouse_ddl,
    clickhouse_database,
    declared_clickhouse_objects,
    split_sql_statements,
)

COUNTING_VIEWS = ["counts_per_minute", "crossings_hourly", "crossings_daily"]
declared_objects = declared_clickhouse_objects


def crossing(event_id: str) -> dict[str, Any]:
    return {
        "event_id": event_id, "camera_id": "cam-1", "frame_seq": 42,
        "capture_time": datetime(2024, 5, 1, 10, 15, 7), "capture_ts_ms": 1714558507000,
        "line": "L1", "direction": "in", "track_id": 7, "class_name": "person",
        "model_name": "yolo", "model_version": "1.0.0", "variant": "control", "experiment": "exp-1",
    }


def zone_minute(frames: int, occupancy_sum: int) -> dict[str, Any]:
    return {
        "camera_id": "cam-1", "zone": "door", "class_name": "person", "minute": datetime(2024, 5, 1, 10, 15),
        "frames": frames, "max_occupancy": 3, "occupancy_sum": occupancy_sum, "entries": 2, "exits": 1,
        "dwell_ms_sum": 4000, "model_name": "yolo", "model_version": "1.0.0", "variant": "control",
        "experiment": "exp-1", "updated_ms": 1714558507000 + frames,
    }


def insert(client: Client, table: str, rows: list[dict[str, Any]]) -> None:
    client.execute(f"INSERT INTO {table} ({', '.join(rows[0])}) VALUES", rows)


def chdb_insert(session: Session, table: str, rows: list[dict[str, Any]]) -> None:
    lines = "\n".join(json.dumps(row, default=str) for row in rows)
    session.query(f"INSERT INTO {table} FORMAT JSONEachRow\n{lines}")


def chdb_scalar(session: Session, sql: str) -> str:
    return str(session.query(sql, "TSV")).strip()


@pytest.fixture
def stack_client(isolated_settings: Callable[..., Settings],
                 clickhouse_client: Callable[[Settings], Client]) -> Client:
    """A client on a fresh database of the stack's server, with the DDL applied."""
    return clickhouse_client(isolated_settings())


@pytest.fixture
def chdb_session(tmp_path: Path) -> Iterator[Session]:
    """A fresh chDB directory with a ``camcount`` database in which every DDL file was applied twice."""
    session = Session(str(tmp_path))
    try:
        session.query("CREATE DATABASE IF NOT EXISTS camcount")
        session.query("USE camcount")
        for _ in range(2):
            for path in sorted(CLICKHOUSE_DDL_DIR.glob("*.sql")):
                for statement in split_sql_statements(path.read_text()):
                    session.query(statement)
        yield session
    finally:
        session.close()


@pytest.mark.integration
def test_ddl_applies_a_second_time_on_the_stack_server(isolated_settings: Callable[..., Settings],
                                                        clickhouse_client: Callable[[Settings], Client]) -> None:
    settings = isolated_settings()  # applies the DDL once
    database = clickhouse_database(settings)

    apply_clickhouse_ddl(settings.clickhouse_url(), database)

    names = clickhouse_client(settings).execute(
        "SELECT name FROM system.tables WHERE database = %(database)s", {"database": database})
    assert {name for (name,) in names} == declared_objects()


def test_ddl_applies_twice_on_modern_clickhouse(chdb_session: Session) -> None:
    names = str(chdb_session.query("SELECT name FROM system.tables WHERE database = 'camcount'", "TSV")).split()
    assert set(names) == declared_objects()


@pytest.mark.integration
@pytest.mark.parametrize("view", COUNTING_VIEWS)
def test_a_reinserted_crossing_counts_once_on_the_stack_server(view: str, stack_client: Client) -> None:
    insert(stack_client, "crossing_events", [crossing("a"), crossing("b")])
    insert(stack_client, "crossing_events", [crossing("a")])

    assert stack_client.execute(f"SELECT sum(crossings) FROM {view}") == [(2,)]


@pytest.mark.parametrize("view", COUNTING_VIEWS)
def test_a_reinserted_crossing_counts_once_on_modern_clickhouse(view: str, chdb_session: Session) -> None:
    chdb_insert(chdb_session, "crossing_events", [crossing("a"), crossing("b")])
    chdb_insert(chdb_session, "crossing_events", [crossing("a")])

    assert chdb_scalar(chdb_session, f"SELECT sum(crossings) FROM {view}") == "2"


@pytest.mark.integration
def test_zone_occupancy_keeps_the_fullest_emission_of_a_minute(stack_client: Client) -> None:
    for frames in (10, 60, 30):  # the 30-frame emission is replayed after the 60-frame one
        insert(stack_client, "zone_occupancy", [zone_minute(frames, occupancy_sum=frames * 2)])

    assert stack_client.execute("SELECT frames, occupancy_sum FROM zone_occupancy FINAL") == [(60, 120)]
