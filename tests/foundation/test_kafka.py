"""The Kafka client configs built from settings, and waiting for a broker.

Kafka client settings librdkafka refuses are reported as such, at once, never as an unreachable broker.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer

from foundation.kafka import (
    BrokerUnreachable,
    KafkaConfigError,
    consumer_config,
    fetch_metadata,
    producer_config,
    wait_for_broker,
)
from foundation.settings import Settings
from tests.services import free_ports


def test_a_bad_client_setting_fails_at_once_naming_the_property():
    started = time.monotonic()
    with pytest.raises(KafkaConfigError, match='"bogus.prop"'):
        wait_for_broker(f"127.0.0.1:{free_ports(1)[0]}", timeout_s=15, client_config={"bogus.prop": "1"})
    assert time.monotonic() - started < 2


def test_a_bad_client_setting_is_not_taken_for_an_unreachable_broker_when_something_listens():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        config = {"bootstrap.servers": f"127.0.0.1:{listener.getsockname()[1]}", "acks": "bogus"}
        with pytest.raises(KafkaConfigError, match="request.required.acks"):
            fetch_metadata(config, timeout_s=1.0)


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
