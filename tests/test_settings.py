"""One settings object from environment and TOML; bad values are named with their variable."""

from __future__ import annotations

import pytest

from driftloop.settings import SettingsError, load_settings


def test_environment_overrides_defaults(monkeypatch):
    monkeypatch.setenv("DRIFTLOOP_KAFKA__BOOTSTRAP_SERVERS", "broker-1:9092,broker-2:9092")
    monkeypatch.setenv("DRIFTLOOP_STACK__PROMETHEUS_PORT", "29090")
    settings = load_settings()
    assert settings.kafka_bootstrap() == "broker-1:9092,broker-2:9092"
    assert settings.prometheus_url() == "http://127.0.0.1:29090"


def test_toml_file_is_read_and_environment_wins(tmp_path, monkeypatch):
    config = tmp_path / "driftloop.toml"
    config.write_text('[kafka]\ntopic_prefix = "prod."\n[ray]\naddress = "ray://head:10001"\nnum_workers = 8\n')
    monkeypatch.setenv("DRIFTLOOP_RAY__NUM_WORKERS", "4")
    monkeypatch.delenv("DRIFTLOOP_CONFIG", raising=False)
    settings = load_settings(config)
    assert settings.kafka.topic("feedback") == "prod.feedback"
    assert settings.ray.address == "ray://head:10001"
    assert settings.ray.num_workers == 4


def test_bad_setting_is_named_with_its_variable(monkeypatch):
    monkeypatch.setenv("DRIFTLOOP_STACK__KAFKA_PORT", "99999")
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert "stack.kafka_port (DRIFTLOOP_STACK__KAFKA_PORT)" in str(error.value)


def test_unknown_topic_name_lists_the_valid_ones():
    settings = load_settings()
    with pytest.raises(ValueError, match="Valid topics are"):
        settings.kafka.topic("predictionz")


def test_missing_config_file_is_reported(tmp_path):
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_paths_are_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.stack.state_dir == tmp_path / ".driftloop" / "stack"
    assert settings.data_dir.is_absolute()
