"""The ClickHouse DDL in infra/clickhouse: it applies repeatedly on the stack's server (ClickHouse 18.16) and on
modern ClickHouse (chDB), it brings a database made by the previous release up to date, and what it derives from
crossing events counts an event written twice once."""

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from chdb.session import Session
from clickhouse_driver import Client

from foundation.clickhouse import (
    apply_clickhouse_ddl,
    clickhouse_database,
    declared_clickhouse_objects,
    quote_identifier,
)
from foundation.settings import Settings
from tests.chdb_ddl import apply_ddl_in_chdb
from tests.services import clickhouse_client_for

COUNTING_VIEWS = ["counts_per_minute", "crossings_hourly", "crossings_daily"]
declared_objects = declared_clickhouse_objects
# The tables that gained columns since the previous release, created as that release's DDL files created them.
PREVIOUS_RELEASE_DDL = Path(__file__).parent / "ddl_before_traceability"
MIGRATED_TABLES = ("window_counts", "zone_occupancy", "shadow_pairs")


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


def window_count_v1() -> dict[str, Any]:
    return {
        "camera_id": "cam-1", "window_start": datetime(2024, 5, 1, 10, 15), "window_seconds": 60, "line": "L1",
        "class_name": "person", "direction": "in", "variant": "control", "experiment": "exp-1", "model_name": "yolo",
        "model_version": "1.0.0", "count": 3, "updated_ms": 1714558507000,
    }


def shadow_pair_v1() -> dict[str, Any]:
    return {
        "experiment": "exp-1", "camera_id": "cam-1", "frame_seq": 42, "capture_time": datetime(2024, 5, 1, 10, 15, 7),
        "capture_ts_ms": 1714558507000, "control_variant": "control", "candidate_variant": "int8",
        "control_model_version": "1.0.0", "candidate_model_version": "1.0.0-int8", "control_detections": 2,
        "candidate_detections": 2, "matched_boxes": 2, "control_infer_ms": 9.5, "candidate_infer_ms": 4.5,
    }


# Rows the previous release wrote, before the traceability columns existed.
PREVIOUS_RELEASE_ROWS = {"window_counts": [window_count_v1()], "zone_occupancy": [zone_minute(60, 120)],
                         "shadow_pairs": [shadow_pair_v1()]}
# Per migrated table: the new columns hold "unknown".
UNKNOWN = {
    "window_counts": "last_frame_seq = -1 AND last_capture_ts_ms = -1",
    "zone_occupancy": "last_frame_seq = -1 AND last_capture_ts_ms = -1",
    "shadow_pairs": "control_model_name = '' AND candidate_model_name = ''",
}
DESCRIBE = "DESCRIBE TABLE {}.{}"  # name, type, default kind and expression, ... of each column, in order


def insert(client: Client, table: str, rows: list[dict[str, Any]]) -> None:
    client.execute(f"INSERT INTO {table} ({', '.join(rows[0])}) VALUES", rows)


def chdb_insert(session: Session, table: str, rows: list[dict[str, Any]]) -> None:
    lines = "\n".join(json.dumps(row, default=str) for row in rows)
    session.query(f"INSERT INTO {table} FORMAT JSONEachRow\n{lines}")


def chdb_scalar(session: Session, sql: str) -> str:
    return str(session.query(sql, "TSV")).strip()


@pytest.fixture
def previous_release_database(stack_settings: Settings) -> Iterator[Settings]:
    """Settings on a database of the stack's server made by the previous release's DDL and holding its rows, to
    which the current DDL was then applied twice (an upgrade, then a restart)."""
    settings = stack_settings.namespaced(uuid.uuid4().hex[:10])
    database = clickhouse_database(settings)
    apply_clickhouse_ddl(settings.clickhouse_url(), database, ddl_dir=PREVIOUS_RELEASE_DDL)
    client = clickhouse_client_for(settings)
    try:
        for table, rows in PREVIOUS_RELEASE_ROWS.items():
            insert(client, table, rows)
        for _ in range(2):
            apply_clickhouse_ddl(settings.clickhouse_url(), database)
        yield settings
    finally:
        client.execute(f"DROP DATABASE IF EXISTS {quote_identifier(database)}")
        client.disconnect()


@pytest.fixture
def chdb_with_previous_release(chdb_session: Session) -> Session:
    """``chdb_session`` plus a database ``previous`` made by the previous release's DDL and holding its rows, to
    which the current DDL was then applied twice; the session's current database is ``camcount`` again."""
    apply_ddl_in_chdb(chdb_session, "previous", PREVIOUS_RELEASE_DDL)
    for table, rows in PREVIOUS_RELEASE_ROWS.items():
        chdb_insert(chdb_session, table, rows)
    for _ in range(2):
        apply_ddl_in_chdb(chdb_session, "previous")
    chdb_session.query("USE camcount")
    return chdb_session


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


@pytest.mark.integration
@pytest.mark.parametrize("table", MIGRATED_TABLES)
def test_a_table_of_the_previous_release_gets_the_columns_of_a_fresh_one_on_the_stack_server(
        table: str, previous_release_database: Settings, stack_client: Client) -> None:
    migrated = clickhouse_client_for(previous_release_database)
    try:
        columns = migrated.execute(DESCRIBE.format(clickhouse_database(previous_release_database), table))
    finally:
        migrated.disconnect()
    assert columns == stack_client.execute(DESCRIBE.format(stack_client.connection.database, table))


@pytest.mark.integration
@pytest.mark.parametrize("table", MIGRATED_TABLES)
def test_rows_written_before_the_traceability_columns_read_as_unknown_on_the_stack_server(
        table: str, previous_release_database: Settings) -> None:
    migrated = clickhouse_client_for(previous_release_database)
    try:
        assert migrated.execute(f"SELECT count(), countIf({UNKNOWN[table]}) FROM {table}") == [(1, 1)]
    finally:
        migrated.disconnect()


@pytest.mark.parametrize("table", MIGRATED_TABLES)
def test_a_table_of_the_previous_release_gets_the_columns_of_a_fresh_one_on_modern_clickhouse(
        table: str, chdb_with_previous_release: Session) -> None:
    columns = chdb_scalar(chdb_with_previous_release, DESCRIBE.format("previous", table))
    assert columns == chdb_scalar(chdb_with_previous_release, DESCRIBE.format("camcount", table))


@pytest.mark.parametrize("table", MIGRATED_TABLES)
def test_rows_written_before_the_traceability_columns_read_as_unknown_on_modern_clickhouse(
        table: str, chdb_with_previous_release: Session) -> None:
    query = f"SELECT count(), countIf({UNKNOWN[table]}) FROM previous.{table}"
    assert chdb_scalar(chdb_with_previous_release, query) == "1\t1"
