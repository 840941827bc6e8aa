"""camcount's ClickHouse: the one way to get a client on its database, and the idempotent DDL runner.

The DDL ships inside the installed ``infra`` package (``infra/clickhouse/*.sql``), so a wheel or image finds it
without copying files around.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from importlib.resources import files
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from clickhouse_driver import Client
from clickhouse_driver.errors import Error as ClickHouseError
from clickhouse_driver.errors import (
    NetworkError,
    ServerException,
    SocketTimeoutError,
    UnexpectedPacketFromServerError,
)
from clickhouse_driver.util.helpers import parse_url

from foundation.errors import CamcountError, ServiceUnavailable
from foundation.settings import Settings

CLICKHOUSE_DDL_DIR = Path(str(files("infra") / "clickhouse"))


class DDLError(CamcountError):
    """A DDL file cannot be applied (or could not be applied idempotently); the message names the statement."""

    code = "SYS_002"
    detail = "ddl-failed"


def clickhouse_database(settings: Settings) -> str:
    """The database camcount uses: the ClickHouse URL's path when it names one, else ``clickhouse.database``."""
    return parse_url(settings.clickhouse_url())[1].get("database") or settings.clickhouse.database


def clickhouse_client(settings: Settings, database: str | None = None) -> Client:
    """A client on camcount's database (``clickhouse_database``), or on ``database`` when given.

    Use this rather than ``Client.from_url``: a CLICKHOUSE_URL without a database path would otherwise land in
    ``default`` while the DDL went into ``clickhouse.database``. Timeouts come from ``clickhouse.connect_timeout_s``
    (connecting, and the ping the driver sends before reusing an idle connection) and ``clickhouse.query_timeout_s``
    unless the URL sets them.
    """
    host, kwargs = parse_url(settings.clickhouse_url())
    timeouts = {"connect_timeout": settings.clickhouse.connect_timeout_s,
                "sync_request_timeout": settings.clickhouse.connect_timeout_s,
                "send_receive_timeout": settings.clickhouse.query_timeout_s}
    return Client(host, **{**timeouts, **kwargs, "database": database or clickhouse_database(settings)})


class ClickHouseUnavailable(ServiceUnavailable):
    """ClickHouse cannot be reached, or answers "not now" (see ``RETRIABLE_SERVER_CODES``)."""

    code = "SYS_002"
    detail = "clickhouse-unavailable"


# Server errors that mean "not now" rather than "never": retried like a lost connection (as the ClickHouse Kafka
# Connect sink does). 159 timeout exceeded, 164 readonly, 202 too many simultaneous queries, 203 no free connection,
# 209 socket timeout, 210 network error, 241 memory limit exceeded, 242 table is read only, 252 too many parts,
# 319 unknown status of insert, 425 system error.
RETRIABLE_SERVER_CODES = frozenset({159, 164, 202, 203, 209, 210, 241, 242, 252, 319, 425})


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` from clickhouse-driver means the server is away or overloaded (retry), not a bad query."""
    if isinstance(exc, NetworkError | SocketTimeoutError | UnexpectedPacketFromServerError | EOFError | OSError):
        return True
    return isinstance(exc, ServerException) and exc.code in RETRIABLE_SERVER_CODES


def split_sql_statements(script: str) -> list[str]:
    """The ``;``-separated statements of ``script``, comments removed.

    A ``;`` inside a quoted string or identifier or inside a comment does not end a statement.
    """
    statements: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(script):
        if script.startswith("--", i):
            end = script.find("\n", i)
            i = len(script) if end < 0 else end
        elif script.startswith("/*", i):
            end = script.find("*/", i + 2)
            i = len(script) if end < 0 else end + 2
            current.append(" ")
        elif script[i] in "'\"`":
            quote, j = script[i], i + 1
            while j < len(script) and script[j] != quote:
                j += 2 if script[j] == "\\" else 1
            current.append(script[i : j + 1])
            i = j + 1
        elif script[i] == ";":
            statements.append("".join(current))
            current = []
            i += 1
        else:
            current.append(script[i])
            i += 1
    statements.append("".join(current))
    return [statement.strip() for statement in statements if statement.strip()]


_ALTER = re.compile(r"ALTER\b", re.IGNORECASE)
_ADD_COLUMN = re.compile(r"ALTER\s+TABLE\s+(\w+)\s+ADD\s+COLUMN\s+(?!IF\b)(\w+)\s+\S", re.IGNORECASE)
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'")
_PARENTHESISED = re.compile(r"\([^()]*\)")


def added_column(statement: str) -> tuple[str, str] | None:
    """``(table, column)`` of an ``ALTER TABLE <table> ADD COLUMN <column> <type> ...`` statement; None for a
    statement that is not an ALTER.

    ClickHouse 18.16 has no ``ADD COLUMN IF NOT EXISTS``, so this is the one ALTER the DDL may hold, and
    ``apply_clickhouse_ddl`` runs it only when the column is missing. Strict, so that check is always right: one
    column per statement, unqualified table and column names (letters, digits, ``_``); any other ALTER (or a
    second action after a comma) raises DDLError, because it could not be made idempotent.
    """
    if not _ALTER.match(statement):
        return None
    match = _ADD_COLUMN.match(statement)
    rest = _QUOTED.sub("''", statement)
    while _PARENTHESISED.search(rest):  # commas inside a type or default, e.g. Decimal(9, 2), are no second action
        rest = _PARENTHESISED.sub("", rest)
    if match is None or "," in rest:
        raise DDLError(f"unsupported DDL statement {statement!r}: the only ALTER allowed is "
                         "`ALTER TABLE <table> ADD COLUMN <column> <type> [DEFAULT ...] [AFTER ...]`, one column each")
    return match.group(1), match.group(2)


def ddl_statements(ddl_dir: Path, has_column: Callable[[str, str], bool]) -> Iterator[tuple[Path, int, str]]:
    """The statements of ``ddl_dir/*.sql`` still to run, in file-name order, as (file, number in file, statement).

    An ``ALTER TABLE t ADD COLUMN c`` (see ``added_column``) is left out when ``has_column(t, c)``. Lazy: that
    question is asked only when its statement is reached, i.e. after the caller ran every statement before it,
    so a table created earlier in the DDL already has its columns. Every other statement is yielded: the DDL
    files make them idempotent with ``IF NOT EXISTS``.
    """
    for path in sorted(ddl_dir.glob("*.sql")):
        for number, statement in enumerate(split_sql_statements(path.read_text()), start=1):
            added = added_column(statement)
            if added is None or not has_column(*added):
                yield path, number, statement


def apply_clickhouse_ddl(url: str, database: str, ddl_dir: Path = CLICKHOUSE_DDL_DIR) -> list[Path]:
    """Create ``database`` if missing, then run every ``ddl_dir/*.sql`` inside it, in file-name order.

    Idempotent as long as the DDL files are: ``CREATE ... IF NOT EXISTS``, and ``ALTER TABLE ... ADD COLUMN``
    statements, which are skipped where the column exists (``ddl_statements``), so a database made by an older
    release gains the columns added since. ``url`` is a clickhouse-driver URL; its own database path is ignored.
    Takes a URL rather than a client because a client's session database cannot be switched reliably (``USE``
    does not survive a reconnect). Returns the files applied.
    """
    host, kwargs = parse_url(url)
    server = Client(host, **{**kwargs, "database": "default"})
    try:
        server.execute(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(database)}")
    finally:
        server.disconnect()
    client = Client(host, **{**kwargs, "database": database})

    def has_column(table: str, column: str) -> bool:
        return client.execute("SELECT count() FROM system.columns WHERE database = %(d)s AND table = %(t)s "
                              "AND name = %(c)s", {"d": database, "t": table, "c": column})[0][0] > 0

    try:
        for path, number, statement in ddl_statements(ddl_dir, has_column):
            try:
                client.execute(statement)
            except ClickHouseError as exc:
                summary = " ".join(str(exc).strip().splitlines()[:2])  # code and message, no stack trace
                raise DDLError(
                    f"statement {number} of {path} failed in database {database!r}: {summary}; "
                    "fix the DDL file (it must run on ClickHouse 18.16 and stay idempotent)"
                ) from exc
    finally:
        client.disconnect()
    return sorted(ddl_dir.glob("*.sql"))


_CREATE = re.compile(r"CREATE\s+(?:MATERIALIZED\s+)?(?:TABLE|VIEW)\s+IF\s+NOT\s+EXISTS\s+(\w+)", re.IGNORECASE)


def declared_clickhouse_objects(ddl_dir: Path = CLICKHOUSE_DDL_DIR) -> set[str]:
    """The tables and views the DDL files create."""
    return {
        match.group(1)
        for path in ddl_dir.glob("*.sql")
        for statement in split_sql_statements(path.read_text())
        if (match := _CREATE.match(statement))
    }


def quote_identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, for logs and status output."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
