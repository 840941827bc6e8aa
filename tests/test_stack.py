"""The local stack launcher, topic/DDL provisioning and the Kafka client configs.

Tests that start or stop processes use a private LocalStack (own home, own free ports), never the session
stack that other tests share.
"""

from __future__ import annotations

import socket
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from clickhouse_driver import Client
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from foundation.kafka import (
    BrokerUnreachable,
    admin_config,
    consumer_config,
    ensure_topics,
    fetch_metadata,
    producer_config,
    wait_for_broker,
)
from foundation.settings import Settings
from foundation.clickhouse import (
    added_column,
    apply_clickhouse_ddl,
    clickhouse_database,
    declared_clickhouse_objects,
    split_sql_statements,
)
from camcount.stack import LocalStack, ServiceStatus, StackError
from tests.services import free_ports, free_stack_ports, local_stack_settings

integration = pytest.mark.integration

SERVICES = ["kafka", "clickhouse", "redis"]
CAMCOUNT_TABLES = declared_clickhouse_objects()
assert {"crossing_events", "window_counts", "inference_log", "counts_per_minute"} <= CAMCOUNT_TABLES


def by_name(statuses: list[ServiceStatus]) -> dict[str, ServiceStatus]:
    return {status.name: status for status in statuses}


def process_exists(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


@pytest.fixture(scope="module")
def private_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalStack, list[ServiceStatus]]]:
    stack = LocalStack(local_stack_settings(tmp_path_factory.mktemp("private-home")))
    try:
        yield stack, stack.up()
    finally:
        stack.down()


@pytest.fixture
def failing_broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """CALF_TANSU_BIN pointing at a 'broker' that prints an error and exits 3 at once."""
    script = tmp_path / "broken-tansu"
    script.write_text("#!/bin/sh\necho 'error: cannot open storage engine' >&2\nexit 3\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("CALF_TANSU_BIN", str(script))
    return script


# --- SQL splitting and client configs (no services needed) ---


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
    with pytest.raises(StackError, match="the only ALTER allowed is"):
        added_column(statement)


def test_client_config_from_settings_wins_over_defaults_and_overrides(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, kafka={"client_config": {"linger.ms": "50"}})
    assert producer_config(settings, **{"linger.ms": 1})["linger.ms"] == "50"


def test_librdkafka_accepts_producer_and_consumer_configs(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, kafka={"bootstrap_servers": "127.0.0.1:1", "session_timeout_ms": 2000})
    Producer(producer_config(settings)).flush(0)
    Consumer(consumer_config(settings, group_id="g")).close()


def test_wait_for_broker_names_the_address_and_the_fix() -> None:
    (port,) = free_ports(1)
    with pytest.raises(BrokerUnreachable, match=rf"127\.0\.0\.1:{port} not reachable after 0\.3s.*camcount stack up"):
        wait_for_broker(f"127.0.0.1:{port}", timeout_s=0.3)


# --- a private stack: start, reuse, stop ---


@integration
def test_up_starts_every_service_ready_and_managed(private_stack: tuple[LocalStack, list[ServiceStatus]]) -> None:
    _, statuses = private_stack
    assert [(s.name, s.managed, s.ready) for s in statuses] == [(name, True, True) for name in SERVICES]
    assert all(s.pid is not None and process_exists(s.pid) for s in statuses)


@integration
def test_up_again_reuses_the_running_processes(private_stack: tuple[LocalStack, list[ServiceStatus]]) -> None:
    stack, first = private_stack
    again = LocalStack(stack.settings).up()
    assert [s.pid for s in again] == [s.pid for s in first]


@integration
def test_up_with_other_ports_than_the_running_stack_says_to_run_down_first(
    private_stack: tuple[LocalStack, list[ServiceStatus]]
) -> None:
    stack, _ = private_stack
    (other_port,) = free_ports(1)
    ports = stack.settings.stack.model_copy(update={"kafka_port": other_port})
    moved = stack.settings.model_copy(update={"stack": ports})
    with pytest.raises(StackError, match="kafka .* is running with ports .*camcount stack down"):
        LocalStack(moved).up()


@integration
def test_down_stops_every_process_and_removes_pid_files(tmp_path: Path) -> None:
    stack = LocalStack(local_stack_settings(tmp_path))
    pids = [s.pid for s in stack.up()]
    assert stack.down() == ["redis", "clickhouse", "kafka"]
    assert not any(pid is not None and process_exists(pid) for pid in pids)
    assert list((tmp_path / "stack").glob("*/*.pid")) == []
    assert not any(s.ready for s in stack.status())


@integration
def test_down_from_another_instance_stops_the_processes(tmp_path: Path) -> None:
    settings = local_stack_settings(tmp_path)
    starter = LocalStack(settings)
    starter.up()
    assert LocalStack(settings).down() == ["redis", "clickhouse", "kafka"]
    assert not any(s.pid for s in starter.status())


@integration
def test_taken_port_raises_stack_error_naming_port_and_setting(tmp_path: Path) -> None:
    settings = local_stack_settings(tmp_path)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", settings.stack.redis_port))
        squatter.listen()
        expected = rf"port {settings.stack.redis_port} \(stack.redis_port\).*CAMCOUNT_STACK__REDIS_PORT"
        with pytest.raises(StackError, match=expected):
            LocalStack(settings).up()
    assert list((tmp_path / "stack").glob("*/*.pid")) == []


@integration
def test_service_exiting_at_start_raises_stack_error_with_its_log(tmp_path: Path, failing_broker: Path) -> None:
    expected = r"(?s)kafka \(pid \d+\) exited while starting with code 3.*see .*kafka\.log.*cannot open storage engine"
    with pytest.raises(StackError, match=expected):
        LocalStack(local_stack_settings(tmp_path)).up()


@integration
def test_failed_up_stops_the_services_it_started(tmp_path: Path, failing_broker: Path) -> None:
    stack = LocalStack(local_stack_settings(tmp_path))
    with pytest.raises(StackError):
        stack.up()
    assert list((tmp_path / "stack").glob("*/*.pid")) == []
    assert [s.pid for s in stack.status()] == [None, None, None]


@integration
def test_missing_broker_binary_raises_stack_error_saying_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALF_TANSU_BIN", str(tmp_path / "no-such-tansu"))
    with pytest.raises(StackError, match="Tansu broker not found.*make install"):
        LocalStack(local_stack_settings(tmp_path)).up()


# --- external services ---


@integration
def test_external_kafka_is_neither_started_nor_stopped(
    stack_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", stack_settings.kafka_bootstrap())
    monkeypatch.delenv("CLICKHOUSE_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    stack = LocalStack(Settings(home=tmp_path, stack=free_stack_ports()))
    kafka = by_name(stack.up())["kafka"]
    assert (kafka.managed, kafka.ready, kafka.pid) == (False, True, None)
    assert kafka.address == stack_settings.kafka_bootstrap()
    assert stack.down() == ["redis", "clickhouse"]
    fetch_metadata(admin_config(stack_settings), timeout_s=2.0)


# --- provisioning on the session stack ---


@integration
def test_stack_topics_exist_with_the_configured_partition_counts(stack_settings: Settings) -> None:
    kafka = stack_settings.kafka
    names = [kafka.frames_topic, kafka.detections_topic, kafka.crossings_topic, kafka.window_counts_topic,
             kafka.dead_letter_topic]
    metadata = AdminClient(admin_config(stack_settings)).list_topics(timeout=5)
    actual = {name: len(metadata.topics[name].partitions) for name in names if name in metadata.topics}
    assert actual == {name: kafka.partitions for name in names}


@integration
def test_existing_topic_with_other_partition_count_is_kept_with_a_warning(
    isolated_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    settings = isolated_settings(partitions=2)
    admin = AdminClient(admin_config(settings))
    ensure_topics(admin, {settings.kafka.frames_topic: 3})
    assert len(admin.list_topics(timeout=5).topics[settings.kafka.frames_topic].partitions) == 2
    assert f"topic {settings.kafka.frames_topic} has 2 partitions, wanted 3" in caplog.text


@integration
def test_applying_ddl_twice_is_idempotent_and_creates_the_tables(
    isolated_settings: Callable[..., Settings], clickhouse_client: Callable[[Settings], Client]
) -> None:
    settings = isolated_settings()  # DDL applied once already
    apply_clickhouse_ddl(settings.clickhouse_url(), clickhouse_database(settings))
    assert {name for (name,) in clickhouse_client(settings).execute("SHOW TABLES")} == CAMCOUNT_TABLES


@integration
def test_failing_ddl_statement_raises_stack_error_naming_file_and_statement(
    isolated_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    (tmp_path / "001_bad.sql").write_text("CREATE TABLE IF NOT EXISTS ok (x UInt8) ENGINE = Memory;\nCREATE TABL oops;")
    settings = isolated_settings()
    with pytest.raises(StackError, match=r"statement 2 of .*001_bad\.sql failed .*Syntax error"):
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


@integration
def test_isolated_settings_get_their_own_provisioned_topics_and_database(
    isolated_settings: Callable[..., Settings],
    clickhouse_client: Callable[[Settings], Client],
    stack_settings: Settings,
) -> None:
    first, second = isolated_settings(partitions=2), isolated_settings()
    assert len({s.kafka.frames_topic for s in (first, second, stack_settings)}) == 3
    assert len({clickhouse_database(s) for s in (first, second, stack_settings)}) == 3
    assert len({s.inference.group_id for s in (first, second, stack_settings)}) == 3
    metadata = AdminClient(admin_config(first)).list_topics(timeout=5)
    assert len(metadata.topics[first.kafka.frames_topic].partitions) == 2
    assert {name for (name,) in clickhouse_client(first).execute("SHOW TABLES")} == CAMCOUNT_TABLES
