"""ClickHouse fixtures the sink tests share: the stack's server and an embedded chDB, both with camcount's DDL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from chdb.session import Session
from clickhouse_driver import Client

from foundation.settings import Settings
from tests.chdb_ddl import apply_ddl_in_chdb


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
        for _ in range(2):
            apply_ddl_in_chdb(session, "camcount")
        yield session
    finally:
        session.close()
