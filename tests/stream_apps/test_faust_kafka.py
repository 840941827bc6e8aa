"""The counting app's Kafka clients get their settings from the same client config as every other client."""

import asyncio

import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from foundation.kafka import FETCH_WAIT_MS_COUNTING, KafkaConfigError
from foundation.settings import Settings
from stream_apps.counting_app import build_app
from stream_apps.faust_kafka import faust_broker_options

SASL_SSL = {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "counter",
            "sasl.password": "s3cret", "client.id": "camcount-count-7"}


def _settings(tmp_path, client_config: dict[str, str]) -> Settings:
    return Settings(home=tmp_path, kafka={"bootstrap_servers": "broker-a:9093,broker-b:9093",
                                          "client_config": client_config})


def test_sasl_ssl_settings_in_client_config_reach_the_counting_apps_consumer_and_producer(tmp_path):
    app = build_app(_settings(tmp_path, SASL_SSL))

    consumer_auth = credentials_to_aiokafka_auth(app.conf.broker_credentials, app.conf.ssl_context)
    producer_auth = app.producer._settings_auth()
    for auth in (consumer_auth, producer_auth):
        assert auth["security_protocol"] == "SASL_SSL"
        assert auth["sasl_mechanism"] == "SCRAM-SHA-512"
        assert (auth["sasl_plain_username"], auth["sasl_plain_password"]) == ("counter", "s3cret")
        assert auth["ssl_context"] is not None
    assert app.conf.broker_client_id == "camcount-count-7"
    assert [str(url) for url in app.conf.broker] == ["kafka://broker-a:9093", "kafka://broker-b:9093"]


def test_without_security_settings_the_counting_app_connects_in_plaintext(tmp_path):
    app = build_app(_settings(tmp_path, {}))

    assert app.producer._settings_auth()["security_protocol"] == "PLAINTEXT"


def test_tls_without_sasl_gives_ssl_credentials_that_skip_hostname_checks_when_told():
    options = faust_broker_options({"bootstrap.servers": "b:9093", "security.protocol": "ssl",
                                    "ssl.endpoint.identification.algorithm": "none"})

    auth = credentials_to_aiokafka_auth(options["broker_credentials"])
    assert auth["security_protocol"] == "SSL"
    assert auth["ssl_context"].check_hostname is False


def test_an_unknown_security_protocol_is_a_config_error_naming_it():
    with pytest.raises(KafkaConfigError, match="security.protocol='SASL_TLS'"):
        faust_broker_options({"bootstrap.servers": "b:9093", "security.protocol": "SASL_TLS"})


def test_an_unreadable_ca_file_is_a_config_error(tmp_path):
    with pytest.raises(KafkaConfigError, match="cannot be loaded"):
        faust_broker_options({"bootstrap.servers": "b:9093", "security.protocol": "SSL",
                              "ssl.ca.location": str(tmp_path / "missing.pem")})


def test_the_counting_apps_consumer_does_not_park_fetches_for_faust_s_fixed_1_5_s(tmp_path):
    app = build_app(_settings(tmp_path, {}))

    async def create_consumer():  # aiokafka clients must be created on a running loop
        return app.consumer._thread._create_worker_consumer(app.transport)

    consumer = asyncio.run(create_consumer())
    assert consumer._fetch_max_wait_ms == FETCH_WAIT_MS_COUNTING < 1500
