"""The ClickHouse DDL runner: SQL splitting, the one ALTER allowed (ADD COLUMN), idempotent DDL application."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from clickhouse_driver import Client

from foundation.clickhouse import (
    DDLError,
    added_column,
    apply_clickhouse_ddl,
    clickhouse_client,
    clickhouse_database,
    declared_clickhouse_objects,
    split_sql_statements,
)
from foundation.settings import Settings

integration = pytest.mark.integration

CAMCOUNT_TABLES = declared_clickhouse_objects()
assert {"crossing_events", "window_counts", "inference_log", "counts_per_minute"} <= CAMCOUNT_TABLES


# --- SQL splitting and the ADD COLUMN check (no services needed) ---


def test_split_sql_ignores_semicolons_in_comments_and_strings() -> None:
    script = """
    -- first; still a comment
    CREATE TABLE a (s String DEFAULT 'x;y') ENGINE = Memory;
    /* block; comment */ CREATE VIEW b AS SELECT ';' AS c;
    """
    assert split_sql_statements(script) == [
        "CREATE TABLE a (s String DEFAULT 'x;y') ENGINE = Memory",
        "CREATE VIEW b AS SELECT ';' AS c",
    ]


def test_an_add_column_statement_names_its_table_and_column_whatever_commas_its_type_and_default_hold() -> None:
    statement = "ALTER TABLE window_counts ADD COLUMN price Decimal(9, 2) DEFAULT toDecimal32('1,5', 2) AFTER count"
    assert added_column(statement) == ("window_counts", "price")


def test_a_statement_other_than_an_alter_is_no_added_column() -> None:
    assert added_column("CREATE TABLE IF NOT EXISTS t (altered UInt8) ENGINE = Memory") is None


@pytest.mark.parametrize("statement", [
    "ALTER TABLE t DROP COLUMN c",
    "ALTER TABLE t ADD COLUMN IF NOT EXISTS c UInt8",
    "ALTER TABLE t ADD COLUMN a UInt8, ADD COLUMN b UInt8",
    "ALTER TABLE t ADD COLUMN a UInt8 DEFAULT 1, DROP COLUMN b",
    "ALTER TABLE other_db.t ADD COLUMN c UInt8",
], ids=["drop", "if-not-exists", "two-columns", "two-actions", "qualified-table"])
def test_an_alter_that_cannot_be_made_idempotent_is_refused(statement: str) -> None:
    with pytest.raises(DDLError, match="the only ALTER allowed is"):
        added_column(statement)


# --- applying the DDL on the session stack ---


@integration
def test_applying_ddl_twice_is_idempotent_and_creates_the_tables(
    isolated_settings: Callable[..., Settings], clickhouse_client: Callable[[Settings], Client]
) -> None:
    settings = isolated_settings()  # DDL applied once already
    apply_clickhouse_ddl(settings.clickhouse_url(), clickhouse_database(settings))
    assert {name for (name,) in clickhouse_client(settings).execute("SHOW TABLES")} == CAMCOUNT_TABLES


@integration
def test_failing_ddl_statement_raises_ddl_error_naming_file_and_statement(
    isolated_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    (tmp_path / "001_bad.sql").write_text("CREATE TABLE IF NOT EXISTS ok (x UInt8) ENGINE = Memory;\nCREATE TABL oops;")
    settings = isolated_settings()
    with pytest.raises(DDLError, match=r"statement 2 of .*001_bad\.sql failed .*Syntax error"):
        apply_clickhouse_ddl(settings.clickhouse_url(), clickhouse_database(settings), ddl_dir=tmp_path)


@integration
def test_an_add_column_statement_adds_its_column_once_however_often_the_ddl_is_applied(
    isolated_settings: Callable[..., Settings], clickhouse_client: Callable[[Settings], Client], tmp_path: Path
) -> None:
    (tmp_path / "001_t.sql").write_text("CREATE TABLE IF NOT EXISTS t (a UInt8) ENGINE = MergeTree() ORDER BY a;\n"
                                        "ALTER TABLE t ADD COLUMN b UInt8 DEFAULT 7 AFTER a;")
    settings = isolated_settings()
    for _ in range(2):
        apply_clickhouse_ddl(settings.clickhouse_url(), clickhouse_database(settings), ddl_dir=tmp_path)
    assert [column[:2] for column in clickhouse_client(settings).execute("DESCRIBE TABLE t")] == [
        ("a", "UInt8"), ("b", "UInt8")]


def test_a_client_takes_its_connect_ping_and_query_timeouts_from_settings() -> None:
    settings = Settings(clickhouse={"url": "clickhouse://db:9000/counts", "connect_timeout_s": 2.5,
                                    "query_timeout_s": 12.0})

    connection = clickhouse_client(settings).connection

    assert (connection.connect_timeout, connection.sync_request_timeout, connection.send_receive_timeout) == (
        2.5, 2.5, 12.0)
