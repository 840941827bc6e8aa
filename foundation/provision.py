"""Provisioning: everything a camcount deployment needs to exist before its processes start.

Creates the catalogue's topics and applies the ClickHouse DDL migrations, against whatever services the settings
name (the local dev stack, compose, Kubernetes). Idempotent: safe to run on every deploy and every ``stack up``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from confluent_kafka.admin import AdminClient

from foundation.clickhouse import apply_clickhouse_ddl, clickhouse_database
from foundation.kafka import admin_config, ensure_topics
from foundation.settings import Settings
from foundation.topics import CATALOGUE


def catalogue_topics(settings: Settings) -> dict[str, int]:
    """The topics every camcount deployment needs, each with ``settings.kafka.partitions`` partitions."""
    return {stream.topic(settings.kafka): settings.kafka.partitions for stream in CATALOGUE}


def create_topics(settings: Settings, extra: dict[str, int] | None = None) -> dict[str, int]:
    """Create the catalogue's topics plus ``extra`` (name -> partitions) if missing; returns everything ensured."""
    topics = {**catalogue_topics(settings), **(extra or {})}
    ensure_topics(AdminClient(admin_config(settings)), topics)
    return topics


def provision(settings: Settings, progress: Callable[[str], None]) -> tuple[dict[str, int], list[Path]]:
    """1. create the topics; 2. apply the ClickHouse DDL. Returns (topics ensured, DDL files applied)."""
    topics = create_topics(settings)
    progress(f"kafka: topics {', '.join(f'{n}[{p}]' for n, p in topics.items())}")
    database = clickhouse_database(settings)
    ddl_files = apply_clickhouse_ddl(settings.clickhouse_url(), database)
    progress(f"clickhouse: database {database}: applied {', '.join(f.name for f in ddl_files)}")
    return topics, ddl_files
