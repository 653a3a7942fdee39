"""The configuration object: defaults, YAML file, environment variables, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import ConfigError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("AUDITPIPE_"):
            monkeypatch.delenv(name)


def test_defaults_are_the_local_stack() -> None:
    settings = load_settings()
    assert settings.kafka.bootstrap == "127.0.0.1:9092"
    assert settings.clickhouse.url == "http://127.0.0.1:8123"
    assert settings.kafka.partitions == 6
    assert settings.home == Path(".auditpipe")


def test_env_beats_yaml_beats_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "auditpipe.yaml"
    config.write_text("kafka:\n  bootstrap: yaml:9092\n  partitions: 12\nsink:\n  max_rows: 7\n")
    monkeypatch.setenv("AUDITPIPE_KAFKA_BOOTSTRAP", "env:9092")
    monkeypatch.setenv("AUDITPIPE_CLICKHOUSE_URL", "http://ch:8123")
    monkeypatch.setenv("AUDITPIPE_HOME", str(tmp_path))

    settings = load_settings(config)

    assert settings.kafka.bootstrap == "env:9092"
    assert settings.kafka.partitions == 12
    assert settings.sink.max_rows == 7
    assert settings.clickhouse.url == "http://ch:8123"
    assert settings.home == tmp_path


def test_invalid_values_name_the_setting(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("kafka:\n  partitions: 0\n")
    with pytest.raises(
        ConfigError,
        match=r"kafka\.partitions \(or AUDITPIPE_KAFKA_PARTITIONS\): Input should be greater",
    ):
        load_settings(config)


def test_unknown_settings_are_errors(tmp_path: Path) -> None:
    config = tmp_path / "typo.yaml"
    config.write_text("sink:\n  max_row: 5\n")
    with pytest.raises(ConfigError, match=r"sink\.max_row"):
        load_settings(config)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml")


def test_a_misspelt_key_names_its_env_variable_and_the_closest_setting(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("kafka:\n  bootstap: x:1\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(config)
    assert (
        "kafka.bootstap (or AUDITPIPE_KAFKA_BOOTSTAP): unknown setting; "
        "did you mean kafka.bootstrap?"
    ) in str(exc.value)
    config.write_text("kafak: {bootstrap: x}\n")
    with pytest.raises(ConfigError, match=r"did you mean kafka\?"):
        load_settings(config)


def test_a_misspelt_env_variable_is_an_error_not_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDITPIPE_WORKR_TAKE_MESSAGES", "3")
    with pytest.raises(ConfigError) as exc:
        load_settings()
    assert str(exc.value) == (
        "unknown setting AUDITPIPE_WORKR_TAKE_MESSAGES; "
        "did you mean AUDITPIPE_WORKER_TAKE_MESSAGES?"
    )
    monkeypatch.delenv("AUDITPIPE_WORKR_TAKE_MESSAGES")
    monkeypatch.setenv("AUDITPIPE_UNRELATED_THING", "x")  # nothing near: not ours
    assert load_settings().worker.take_messages == 1024
