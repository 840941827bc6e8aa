"""Settings come from defaults, a YAML file, CAMCOUNT_* env vars and the conventional service env vars."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from foundation.settings import load_settings


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


def test_a_misspelled_key_inside_a_yaml_section_is_refused(monkeypatch, tmp_path):
    config = tmp_path / "camcount.yaml"
    config.write_text("kafka:\n  partitons: 4\n")
    monkeypatch.setenv("CAMCOUNT_CONFIG", str(config))
    with pytest.raises(ValidationError, match="kafka.partitons"):
        load_settings()


def test_a_misspelled_nested_env_var_is_refused(monkeypatch):
    monkeypatch.setenv("CAMCOUNT_KAFKA__PARTITONS", "3")
    with pytest.raises(ValidationError, match="kafka.partitons"):
        load_settings()


def test_client_config_takes_any_librdkafka_property_name(monkeypatch):
    monkeypatch.setenv("CAMCOUNT_KAFKA__CLIENT_CONFIG", '{"security.protocol": "SSL"}')
    assert load_settings().kafka.client_config == {"security.protocol": "SSL"}


def test_the_log_level_is_case_insensitive(monkeypatch):
    monkeypatch.setenv("CAMCOUNT_LOG_LEVEL", "debug")
    assert load_settings().log_level == "DEBUG"


def test_an_unknown_log_level_is_refused(monkeypatch):
    monkeypatch.setenv("CAMCOUNT_LOG_LEVEL", "verbose")
    with pytest.raises(ValidationError, match="log_level"):
        load_settings()


def test_camcount_env_vars_that_name_no_setting_are_ignored(monkeypatch):
    monkeypatch.setenv("CAMCOUNT_VIDEO_DIR", "/data/videos")  # docker-compose's, not a setting
    monkeypatch.delenv("CAMCOUNT_HOME", raising=False)
    assert load_settings().home == Path(".camcount")


def test_namespaced_settings_give_every_consumer_group_the_suffix():
    settings = load_settings()

    spaced = settings.namespaced("run7")

    groups = (spaced.inference.group_id, spaced.counting.app_id, spaced.clickhouse.sink_group_id)
    assert all(group.endswith("-run7") for group in groups), groups
    assert spaced.clickhouse.sink_group_id == f"{settings.clickhouse.sink_group_id}-run7"
