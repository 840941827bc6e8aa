"""The local dev stack launcher: LocalStack up/down/status, its ports and pid files, external services.

Tests that start or stop processes use a private LocalStack (own home, own free ports), never the session
stack that other tests share.
"""

from __future__ import annotations

import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from camcount.stack import LocalStack, ServiceStatus, StackError
from foundation.kafka import base_config, fetch_metadata
from foundation.settings import Settings
from tests.services import free_ports, free_stack_ports, local_stack_settings

integration = pytest.mark.integration

SERVICES = ["kafka", "clickhouse", "redis"]


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
    fetch_metadata(base_config(stack_settings), timeout_s=2.0)
