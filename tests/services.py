"""The shared fixtures for integration tests: one running stack per session, an isolated namespace per test.

``stack_settings`` (session) yields the Settings of a running stack:

- by default a :class:`~camcount.stack.LocalStack` with a temporary home and free ports, so it never collides
  with a developer's stack on the default ports; a service whose address is set in the environment
  (``KAFKA_BOOTSTRAP_SERVERS``, ``CLICKHOUSE_URL``, ``REDIS_URL``) is used instead of a local one;
- with ``CAMCOUNT_TESTCONTAINERS=1``, Kafka, ClickHouse and Redis containers (needs a Docker engine).

Its Kafka session timeout is 3 s because the Tansu broker answers JoinGroup only after half of it.

``isolated_settings`` (factory) gives each call its own topics, consumer group / app ids and ClickHouse
database, provisioned on the session stack and removed after the test, so tests never see each other's data.
Redis is shared: tests use their own keys.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import redis
from clickhouse_driver import Client
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from camcount.stack import LocalStack
from foundation.clickhouse import apply_clickhouse_ddl, clickhouse_database, quote_identifier
from foundation.clickhouse import clickhouse_client as connect_clickhouse
from foundation.kafka import base_config
from foundation.provision import catalogue_topics, create_topics
from foundation.settings import Settings

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]

TEST_SESSION_TIMEOUT_MS = 3000


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that were free a moment ago."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_stack_ports() -> dict[str, int]:
    """A ``stack`` settings section with free ports for every local service."""
    names = ("kafka_port", "clickhouse_tcp_port", "clickhouse_http_port", "clickhouse_interserver_port", "redis_port")
    return dict(zip(names, free_ports(len(names)), strict=True))


def local_stack_settings(home: Path) -> Settings:
    """Settings for a private, all-local stack in ``home`` on free ports, whatever the environment says."""
    return Settings(
        home=home,
        stack=free_stack_ports(),
        kafka={"bootstrap_servers": None, "session_timeout_ms": TEST_SESSION_TIMEOUT_MS},
        clickhouse={"url": None},
        redis={"url": None},
    )


def run_camcount(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """``python -m camcount.cli ARGS`` in the repository, with no CAMCOUNT_* variable but those in ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("CAMCOUNT_")}
    return subprocess.run([sys.executable, "-m", "camcount.cli", *args], capture_output=True, text=True,
                          env={**base, **(env or {})}, cwd=REPO, timeout=timeout)


def clickhouse_client_for(settings: Settings) -> Client:
    """A clickhouse-driver client on the database ``settings`` point at."""
    return connect_clickhouse(settings)


@pytest.fixture(scope="session")
def stack_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    home = tmp_path_factory.mktemp("camcount-home")
    with ExitStack() as cleanup:
        if os.environ.get("CAMCOUNT_TESTCONTAINERS") == "1":
            settings = _start_containers(home, cleanup)
        else:
            settings = Settings(
                home=home, stack=free_stack_ports(), kafka={"session_timeout_ms": TEST_SESSION_TIMEOUT_MS}
            )
        stack = LocalStack(settings)
        cleanup.callback(stack.down)
        stack.up(progress=log.info)
        yield settings


def _start_containers(home: Path, cleanup: ExitStack) -> Settings:
    """Kafka, ClickHouse and Redis in Docker; they are external services to the LocalStack that provisions them."""
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        raise RuntimeError("CAMCOUNT_TESTCONTAINERS=1 but `docker info` fails: start a Docker engine or unset it")
    from testcontainers.community.clickhouse import ClickHouseContainer
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.community.redis import RedisContainer

    kafka = cleanup.enter_context(KafkaContainer())
    clickhouse = cleanup.enter_context(ClickHouseContainer())
    redis_container = cleanup.enter_context(RedisContainer())
    redis_url = f"redis://{redis_container.get_container_host_ip()}:{redis_container.get_exposed_port(6379)}/0"
    return Settings(
        home=home,
        kafka={"bootstrap_servers": kafka.get_bootstrap_server(), "session_timeout_ms": TEST_SESSION_TIMEOUT_MS},
        clickhouse={"url": clickhouse.get_connection_url()},
        redis={"url": redis_url},
    )


@pytest.fixture(scope="module")
def isolated_settings(stack_settings: Settings) -> Iterator[Callable[..., Settings]]:
    """Factory: ``isolated_settings(partitions=None)`` -> Settings with fresh, provisioned topics and database.

    Each call makes a new namespace (share one between the processes of a test by passing the same object).
    Topics get ``partitions`` partitions (default: the session's). Everything is deleted after the test module.
    ``provisioned=False`` leaves the namespace empty (no topics, no database) for a test that provisions it.
    """
    made: list[Settings] = []

    def make(partitions: int | None = None, provisioned: bool = True) -> Settings:
        settings = stack_settings.namespaced(uuid.uuid4().hex[:10], partitions)
        made.append(settings)
        if provisioned:
            create_topics(settings)
            apply_clickhouse_ddl(settings.clickhouse_url(), clickhouse_database(settings))
        return settings

    yield make
    for settings in made:
        _drop_namespace(settings)


def _drop_namespace(settings: Settings) -> None:
    admin = AdminClient(base_config(settings))  # must outlive the futures, or they fail with _DESTROY
    for topic, future in admin.delete_topics(list(catalogue_topics(settings))).items():
        try:
            future.result()
        except KafkaException as exc:  # cleanup goes on: the next namespace is unique anyway
            log.warning("could not delete test topic %s: %s", topic, exc)
    client = connect_clickhouse(settings, database="default")
    try:
        client.execute(f"DROP DATABASE IF EXISTS {quote_identifier(clickhouse_database(settings))}")
    finally:
        client.disconnect()


@pytest.fixture
def clickhouse_client() -> Iterator[Callable[[Settings], Client]]:
    """Factory: ``clickhouse_client(settings)`` -> a client on that settings' database, disconnected after the test."""
    clients: list[Client] = []

    def connect(settings: Settings) -> Client:
        client = clickhouse_client_for(settings)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.disconnect()


@pytest.fixture
def redis_client(stack_settings: Settings) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(stack_settings.redis_url()) as client:
        yield client


@pytest.fixture(scope="session")
def model_registry() -> str:
    """Registry holding the real default model (YOLOv4-tiny, COCO), imported once into the repo's state dir."""
    from models.default_model import import_default_model

    settings = Settings(home=REPO / ".camcount")
    import_default_model(settings)
    return settings.model_registry()


@pytest.fixture
def two_version_registry(model_registry: str, tmp_path: Path) -> tuple[Path, str]:
    """``(root, production version)``: a private copy of the test registry where yolov4-tiny@9.0.0 is the
    production model's weights registered again under another version, so tests may move aliases."""
    from models.registry import ModelRegistry

    root = tmp_path / "registry"
    shutil.copytree(model_registry, root)
    registry = ModelRegistry(root)
    current = registry.resolve("yolov4-tiny@production")
    fields = current.manifest.model_dump(exclude={"version", "sha256", "created_at"})
    registry.register(current.path, **{**fields, "version": "9.0.0"})
    return root, current.manifest.version


@pytest.fixture(scope="module")
def pipeline_settings(isolated_settings: Callable[..., Settings], model_registry: str,
                      tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Settings]:
    """Factory: isolated settings that also name the default model's registry and a home of their own.

    Keyword arguments override ``inference`` settings (e.g. ``max_batch=4``, ``transactional=True``).
    """

    def make(partitions: int | None = 4, **inference: Any) -> Settings:
        settings = isolated_settings(partitions)
        return settings.model_copy(update={
            "home": tmp_path_factory.mktemp("home"),
            "model": settings.model.model_copy(update={"registry": model_registry}),
            "inference": settings.inference.model_copy(update={"metrics_port": 0, **inference}),
            "counting": settings.counting.model_copy(update={"web_port": free_ports(1)[0]}),
        })

    return make


@pytest.fixture(scope="module")
def outage_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalStack, Settings]]:
    """A private local stack (its own broker, ClickHouse and Redis) that a fault-injection test may pause, stop or
    restart without disturbing the session stack; provisioned, with fast retries and breakers."""
    settings = local_stack_settings(tmp_path_factory.mktemp("outage-home"))
    settings = settings.model_copy(update={
        "resilience": settings.resilience.model_copy(update={
            "retry_initial_s": 0.1, "retry_max_s": 0.5, "breaker_failures": 3, "breaker_reset_s": 1.0}),
        "clickhouse": settings.clickhouse.model_copy(update={"connect_timeout_s": 1.0, "query_timeout_s": 2.0}),
    })
    stack = LocalStack(settings)
    stack.up()
    try:
        yield stack, settings
    finally:
        stack.down()


# --- the HTTP API ------------------------------------------------------------------------------------------------
API_ROLES = ("viewer", "system", "ml_engineer", "admin")
PROMO_MODEL = "promo-yolo"
"""A second model name in the API server's registry (the default model's weights as 1.0.0 and 2.0.0), which tests
may promote and roll back without moving the default model."""


class ApiServer:
    """A running ``camcount api`` process (real port, the session stack's Redis and ClickHouse) and its keys.

    ``keys`` maps each role (and ``revoked``) to a key the server's keys file knows; ``admin_key`` is the
    bootstrap key from CAMCOUNT_API_ADMIN_KEY. ``settings`` are the server's own (database, Redis prefix, registry).
    """

    def __init__(self, url: str, admin_key: str, keys: dict[str, str], settings: Settings, log_path: Path) -> None:
        self.url = url
        self.admin_key = admin_key
        self.keys = keys
        self.settings = settings
        self.log_path = log_path

    def headers(self, role: str | None = "admin") -> dict[str, str]:
        """``X-API-Key`` of ``role`` (``bootstrap`` for the admin key from the environment); none for None."""
        if role is None:
            return {}
        return {"X-API-Key": self.admin_key if role == "bootstrap" else self.keys[role]}

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def _api_registry(model_registry: str, root: Path) -> Path:
    from models.registry import ModelRegistry

    shutil.copytree(model_registry, root)
    registry = ModelRegistry(root)
    current = registry.resolve("yolov4-tiny@production")
    fields = current.manifest.model_dump(exclude={"name", "version", "sha256", "created_at"})
    for version in ("1.0.0", "2.0.0"):
        registry.register(current.path, **{**fields, "name": PROMO_MODEL, "version": version})
    registry.promote(PROMO_MODEL, "1.0.0")
    return root


def _api_keys_file(path: Path) -> dict[str, str]:
    import json

    from api.auth import hash_key

    secrets = {role: f"test-{role}-{uuid.uuid4().hex}" for role in (*API_ROLES, "revoked")}
    entries = [{"key_id": f"key-{role}", "name": f"test {role}", "role": "viewer" if role == "revoked" else role,
                "key_sha256": hash_key(secret), "revoked": role == "revoked"} for role, secret in secrets.items()]
    path.write_text(json.dumps(entries))
    return secrets


def start_api_process(settings: Settings, workdir: Path, admin_key: str, timeout_s: float = 120):
    """Start ``camcount api`` with exactly ``settings`` and wait until it is ready; returns (processes, url)."""
    import time

    import httpx

    from tests.pipeline import CamcountProcesses

    processes = CamcountProcesses(settings, workdir)
    process = processes.start("api", "api", CAMCOUNT_API_ADMIN_KEY=admin_key)
    url = f"http://127.0.0.1:{settings.api.port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                return processes, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    processes.stop_all()
    log_text = (workdir / "api.log").read_text(errors="replace")[-4000:]
    raise RuntimeError(f"camcount api did not become ready within {timeout_s} s:\n{log_text}")


@pytest.fixture(scope="session")
def api_server(stack_settings: Settings, model_registry: str,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """One ``camcount api`` process for the session: its own ClickHouse database and Redis prefix on the session
    stack, a private copy of the test registry (plus PROMO_MODEL), a keys file with one key per role, CPU only,
    auth failures effectively unlimited (the 429 budget is tested in process), aliases re-read on every request."""
    workdir = tmp_path_factory.mktemp("api-server")
    settings = stack_settings.namespaced(uuid.uuid4().hex[:10])
    apply_clickhouse_ddl(settings.clickhouse_url(), clickhouse_database(settings))
    keys = _api_keys_file(workdir / "keys.json")
    settings = settings.model_copy(update={
        "home": workdir / "home",
        "model": settings.model.model_copy(update={
            "registry": str(_api_registry(model_registry, workdir / "registry")),
            "providers": ["CPUExecutionProvider"]}),
        "api": settings.api.model_copy(update={
            "port": free_ports(1)[0], "auth_failure_limit": 1_000_000, "model_resolve_ttl_s": 0.0,
            "keys_file": str(workdir / "keys.json"), "request_log_flush_s": 0.2, "max_body_bytes": 4 * 1024 * 1024}),
    })
    admin_key = f"test-bootstrap-{uuid.uuid4().hex}"
    processes, url = start_api_process(settings, workdir, admin_key)
    try:
        yield ApiServer(url, admin_key, keys, settings, workdir / "api.log")
    finally:
        processes.stop_all()
        client = connect_clickhouse(settings, database="default")
        try:
            client.execute(f"DROP DATABASE IF EXISTS {quote_identifier(clickhouse_database(settings))}")
        finally:
            client.disconnect()
