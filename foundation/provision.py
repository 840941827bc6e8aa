"""Provisioning: everything a camcount deployment needs to exist before its processes start.

Creates the catalogue's topics and applies the ClickHouse DDL migrations, against whatever services the settings
name (the local dev stack, compose, Kubernetes). Idempotent: safe to run on every deploy and every ``stack up``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from clickhouse_driver import Client
from clickhouse_driver.errors import Error as ClickHouseError
from clickhouse_driver.util.helpers import parse_url
from confluent_kafka.admin import AdminClient

from foundation.clickhouse import ClickHouseUnavailable, apply_clickhouse_ddl, clickhouse_database, redact_url
from foundation.kafka import base_config, ensure_topics, wait_for_broker
from foundation.settings import Settings
from foundation.topics import CATALOGUE


def catalogue_topics(settings: Settings) -> dict[str, int]:
    """The topics every camcount deployment needs, each with ``settings.kafka.partitions`` partitions."""
    return {stream.topic(settings.kafka): settings.kafka.partitions for stream in CATALOGUE}


def create_topics(settings: Settings, extra: dict[str, int] | None = None) -> dict[str, int]:
    """Create the catalogue's topics plus ``extra`` (name -> partitions) if missing; returns everything ensured."""
    topics = {**catalogue_topics(settings), **(extra or {})}
    ensure_topics(AdminClient(base_config(settings)), topics)
    return topics


def wait_for_services(settings: Settings, timeout_s: float) -> None:
    """Block until the broker answers a Metadata request and ClickHouse a query, each within ``timeout_s``."""
    wait_for_broker(settings.kafka_bootstrap(), timeout_s, client_config=settings.kafka.client_config)
    host, kwargs = parse_url(settings.clickhouse_url())
    deadline = time.monotonic() + timeout_s
    while True:
        client = Client(host, **{**kwargs, "database": "default", "connect_timeout": 2, "send_receive_timeout": 5})
        try:
            client.execute("SELECT 1")
            return
        except (ClickHouseError, OSError, EOFError) as exc:
            if time.monotonic() >= deadline:
                raise ClickHouseUnavailable(
                    f"ClickHouse at {redact_url(settings.clickhouse_url())} not reachable after {timeout_s:g}s "
                    f"({exc})", remedy="start it, or set CLICKHOUSE_URL to a running server") from None
            time.sleep(0.5)
        finally:
            client.disconnect()


def provision(settings: Settings, progress: Callable[[str], None]) -> tuple[dict[str, int], list[Path]]:
    """1. create the topics; 2. apply the ClickHouse DDL. Returns (topics ensured, DDL files applied)."""
    topics = create_topics(settings)
    progress(f"kafka: topics {', '.join(f'{n}[{p}]' for n, p in topics.items())}")
    database = clickhouse_database(settings)
    ddl_files = apply_clickhouse_ddl(settings.clickhouse_url(), database)
    progress(f"clickhouse: database {database}: applied {', '.join(f.name for f in ddl_files)}")
    return topics, ddl_files
