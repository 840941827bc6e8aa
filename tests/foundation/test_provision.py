"""Provisioning: the catalogue's topics and the ClickHouse DDL, on the session stack and from `camcount provision`."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from clickhouse_driver import Client
from confluent_kafka.admin import AdminClient

from foundation.clickhouse import clickhouse_database, declared_clickhouse_objects
from foundation.kafka import base_config, ensure_topics
from foundation.provision import catalogue_topics, provision
from foundation.settings import Settings
from tests.services import free_ports, run_camcount

integration = pytest.mark.integration

CAMCOUNT_TABLES = declared_clickhouse_objects()


def test_provision_with_the_broker_down_exits_2_with_one_line_naming_its_address():
    (port,) = free_ports(1)
    result = run_camcount("provision", "--wait", "0.3", env={"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"},
                          timeout=30)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("camcount provision: error: Kafka broker at ")
    assert f"127.0.0.1:{port} not reachable after 0.3s" in line


# --- provisioning on the session stack ---


@integration
def test_stack_topics_exist_with_the_configured_partition_counts(stack_settings: Settings) -> None:
    kafka = stack_settings.kafka
    names = [kafka.frames_topic, kafka.detections_topic, kafka.crossings_topic, kafka.window_counts_topic,
             kafka.dead_letter_topic]
    metadata = AdminClient(base_config(stack_settings)).list_topics(timeout=5)
    actual = {name: len(metadata.topics[name].partitions) for name in names if name in metadata.topics}
    assert actual == {name: kafka.partitions for name in names}


@integration
def test_existing_topic_with_other_partition_count_is_kept_with_a_warning(
    isolated_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    settings = isolated_settings(partitions=2)
    admin = AdminClient(base_config(settings))
    ensure_topics(admin, {settings.kafka.frames_topic: 3})
    assert len(admin.list_topics(timeout=5).topics[settings.kafka.frames_topic].partitions) == 2
    assert f"topic {settings.kafka.frames_topic} has 2 partitions, wanted 3" in caplog.text


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
    metadata = AdminClient(base_config(first)).list_topics(timeout=5)
    assert len(metadata.topics[first.kafka.frames_topic].partitions) == 2
    assert {name for (name,) in clickhouse_client(first).execute("SHOW TABLES")} == CAMCOUNT_TABLES


@integration
def test_provision_twice_is_idempotent_and_makes_the_topics_and_tables(
    isolated_settings: Callable[..., Settings], clickhouse_client: Callable[[Settings], Client]
) -> None:
    settings = isolated_settings(partitions=3, provisioned=False)
    admin = AdminClient(base_config(settings))
    assert not set(catalogue_topics(settings)) & set(admin.list_topics(timeout=5).topics), "a fresh namespace"
    progress: list[str] = []
    first = provision(settings, progress.append)
    second = provision(settings, progress.append)
    assert first == second
    topics, ddl_files = first
    assert topics == catalogue_topics(settings) and set(topics.values()) == {3}
    assert ddl_files and len(progress) == 4
    metadata = admin.list_topics(timeout=5)
    assert {name: len(metadata.topics[name].partitions) for name in topics if name in metadata.topics} == topics
    assert {name for (name,) in clickhouse_client(settings).execute("SHOW TABLES")} == CAMCOUNT_TABLES
