"""Settings come from defaults, a YAML file, CAMCOUNT_* env vars and the conventional service env vars."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from camcount.settings import load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "CLICKHOUSE_URL", "REDIS_URL", "CAMCOUNT_CONFIG"):
        monkeypatch.delenv(name, raising=False)


def test_unset_service_addresses_mean_the_local_stack():
    settings = load_settings()
    assert settings.kafka.bootstrap_servers is None
    assert settings.kafka_bootstrap() == f"127.0.0.1:{settings.stack.kafka_port}"
    assert settings.clickhouse_url().endswith(f":{settings.stack.clickhouse_tcp_port}/camcount")


def test_conventional_env_vars_name_external_services(monkeypatch):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/1")
    settings = load_settings()
    assert settings.kafka_bootstrap() == "kafka:9092"
    assert settings.redis_url() == "redis://cache:6379/1"


def test_nested_env_vars_override_the_yaml_file(monkeypatch, tmp_path):
    config = tmp_path / "camcount.yaml"
    config.write_text("inference:\n  max_batch: 4\n  max_delay_ms: 50\n")
    monkeypatch.setenv("CAMCOUNT_CONFIG", str(config))
    monkeypatch.setenv("CAMCOUNT_INFERENCE__MAX_BATCH", "16")
    settings = load_settings()
    assert settings.inference.max_batch == 16
    assert settings.inference.max_delay_ms == 50


def test_a_missing_yaml_file_is_an_error_that_names_it(monkeypatch, tmp_path):
    monkeypatch.setenv("CAMCOUNT_CONFIG", str(tmp_path / "nope.yaml"))
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_settings()


def test_an_invalid_value_names_the_field(monkeypatch):
    monkeypatch.setenv("CAMCOUNT_INFERENCE__MAX_BATCH", "0")
    with pytest.raises(ValidationError, match="inference.max_batch"):
        load_settings()


def test_an_unknown_yaml_key_is_refused(monkeypatch, tmp_path):
    config = tmp_path / "camcount.yaml"
    config.write_text("inferense:\n  max_batch: 4\n")
    monkeypatch.setenv("CAMCOUNT_CONFIG", str(config))
    with pytest.raises(ValidationError, match="inferense"):
        load_settings()
