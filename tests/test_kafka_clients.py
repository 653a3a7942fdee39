"""The ``kafka`` section's security settings and the client arguments built from them
(``pipeline/kafka_clients.py``); the real brokers are in
tests/integration/test_secure_stack.py."""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

import faust
import pytest
from pydantic import ValidationError

from pipeline.config import ConfigError, KafkaConfig, load_settings
from pipeline.kafka_clients import client_args, explain, faust_credentials
from pipeline.stack.certs import StackTLS
from tests.conftest import free_port


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> StackTLS:
    made = StackTLS(tmp_path_factory.mktemp("tls"))
    made.ensure()
    return made


def test_plaintext_is_the_default_and_carries_no_tls_or_sasl() -> None:
    args = client_args(KafkaConfig(bootstrap="b:9092"))
    assert args == {"bootstrap_servers": "b:9092", "security_protocol": "PLAINTEXT"}
    assert faust_credentials(KafkaConfig()) is None


def test_sasl_ssl_verifies_the_broker_and_reads_the_password_file(
    tls: StackTLS, tmp_path: Path
) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret-from-file\n")
    kafka = KafkaConfig(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-256",
        username="u",
        password_file=secret,
        ssl_cafile=tls.ca,
    )
    args = client_args(kafka)
    assert args["sasl_mechanism"] == "SCRAM-SHA-256"
    assert (args["sasl_plain_username"], args["sasl_plain_password"]) == ("u", "s3cret-from-file")
    context = args["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    credentials = faust_credentials(kafka)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol.value == "SASL_SSL"
    assert credentials.mechanism.value == "SCRAM-SHA-256"
    assert "s3cret" not in repr(credentials) and "s3cret" not in repr(kafka)


def test_mutual_tls_loads_the_client_certificate(tls: StackTLS) -> None:
    kafka = KafkaConfig(
        security_protocol="SSL",
        ssl_cafile=tls.ca,
        ssl_certfile=tls.client_cert,
        ssl_keyfile=tls.client_key,
    )
    assert client_args(kafka)["security_protocol"] == "SSL"
    assert "sasl_mechanism" not in client_args(kafka)
    assert isinstance(faust_credentials(kafka), faust.SSLCredentials)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"security_protocol": "SASL_SSL"}, "kafka.username is required"),
        ({"security_protocol": "SSL", "ssl_certfile": "c.pem"}, "go together"),
        ({"ssl_cafile": "ca.pem"}, "security_protocol is PLAINTEXT"),
        ({"security_protocol": "TLS"}, "security_protocol"),
        ({"security_protocol": "SASL_SSL", "username": "u", "sasl_mechanism": "MD5"}, "sasl"),
    ],
)
def test_incomplete_security_settings_are_refused_at_load(
    fields: dict[str, str], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        KafkaConfig.model_validate(fields)


def test_an_unreadable_key_or_ca_is_a_one_line_config_error(tmp_path: Path) -> None:
    kafka = KafkaConfig(security_protocol="SSL", ssl_cafile=tmp_path / "missing.pem")
    with pytest.raises(ConfigError, match=r"kafka.ssl_cafile: .*missing\.pem does not exist"):
        client_args(kafka)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ConfigError, match="cannot load"):
        client_args(KafkaConfig(security_protocol="SSL", ssl_cafile=junk))


def test_an_empty_environment_value_unsets_an_optional_setting(
    tls: StackTLS, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUDITPIPE_KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("AUDITPIPE_KAFKA_SSL_CAFILE", "")
    assert load_settings().kafka.ssl_cafile is None


def test_the_password_is_masked_when_the_settings_are_printed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AUDITPIPE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("AUDITPIPE_KAFKA_USERNAME", "u")
    monkeypatch.setenv("AUDITPIPE_KAFKA_PASSWORD", "hunter2-kafka")
    monkeypatch.setenv("AUDITPIPE_KAFKA_SSL_KEY_PASSWORD", "hunter2-key")
    dumped = load_settings().model_dump_json()
    assert "hunter2" not in dumped


def test_nothing_listening_is_named_by_explain() -> None:
    import asyncio

    cause = asyncio.run(explain(KafkaConfig(bootstrap=f"127.0.0.1:{free_port()}")))
    assert cause is not None and "nothing listens there" in cause


def test_the_stack_keys_and_passwords_are_private(tls: StackTLS) -> None:
    for path in (tls.root / "ca.key", tls.server_key, tls.client_key, tls.password_file("x")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(tls.root.stat().st_mode) == 0o700
