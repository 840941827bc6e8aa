"""Kafka client settings librdkafka refuses are reported as such, at once, never as an unreachable broker."""

from __future__ import annotations

import socket
import time

import pytest

from foundation.kafka import KafkaConfigError, fetch_metadata, wait_for_broker
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
