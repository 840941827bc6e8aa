"""camcount's ClickHouse DDL applied in chDB (modern ClickHouse in-process) the way ``apply_clickhouse_ddl`` applies
it on a server: the same statements, with an ``ALTER TABLE ... ADD COLUMN`` skipped where the column exists."""

from __future__ import annotations

from pathlib import Path

from chdb.session import Session

from foundation.clickhouse import CLICKHOUSE_DDL_DIR, ddl_statements


def apply_ddl_in_chdb(session: Session, database: str, ddl_dir: Path = CLICKHOUSE_DDL_DIR) -> None:
    """Create ``database`` if missing, make it the session's current database and apply ``ddl_dir`` in it.

    ``database`` is a plain identifier (letters, digits, ``_``), as are the table and column names that
    ``ddl_statements`` hands to the column check, so they are safe to put in the SQL text.
    """
    session.query(f"CREATE DATABASE IF NOT EXISTS {database}")
    session.query(f"USE {database}")

    def has_column(table: str, column: str) -> bool:
        found = session.query(f"SELECT count() FROM system.columns WHERE database = '{database}' "
                              f"AND table = '{table}' AND name = '{column}'", "TSV")
        return str(found).strip() != "0"

    for _, _, statement in ddl_statements(ddl_dir, has_column):
        session.query(statement)
