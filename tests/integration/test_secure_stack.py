"""The secured stack (``stack up --secure``) and the clients' security settings, on a real
broker and ClickHouse of their own: the whole path (collector, worker, ClickHouse, alerts
tail) over SCRAM on TLS and over mutual TLS; plaintext clients refused; a wrong password,
a certificate of another CA, a missing client certificate and a principal without ACLs
each get one line naming the cause and exit status 3."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from clickhouse_connect.driver.exceptions import DatabaseError

from pipeline.config import Settings
from pipeline.outputs.clickhouse.client import connect
from pipeline.sim.scenarios import reverse_shell_event
from pipeline.sim.simulate import FleetSimulator
from pipeline.stack import LocalStack
from pipeline.stack.certs import StackTLS
from tests.conftest import TEST_STACK_HOME, free_port
from tests.integration.helpers import (
    WorkerProcess,
    private_secured_stack,
    provision,
    publish_events,
    run_cli,
    scalar,
    wait_for_rows,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    home = tmp_path_factory.mktemp("secure-stack")
    # The session stack's broker jars, when it fetched them.
    stack = private_secured_stack(home, TEST_STACK_HOME / "kafka" / "libs")
    try:
        stack.up()
        yield stack
    finally:
        stack.down()


def client(stack: LocalStack, tmp_path: Path, mtls: bool = False, **kafka: Any) -> Settings:
    """The settings `stack up --secure` wrote for clients, with a test's own topics,
    group and database (and ``kafka`` overrides)."""
    tag = uuid.uuid4().hex[:8]
    name = "client-mtls.yaml" if mtls else "client.yaml"
    # The file alone (the test session's AUDITPIPE_* variables name the plain stack).
    data = Settings.model_validate(yaml.safe_load((stack.tls_root / name).read_text())).model_dump()
    data["kafka"] |= {
        "topic_events": f"s{tag}.events",
        "topic_alerts": f"s{tag}.alerts",
        "topic_deadletter": f"s{tag}.deadletter",
        "topic_sandboxes": f"s{tag}.sandboxes",
        "topic_checkpoints": f"s{tag}.checkpoints",
        "topic_deferred": f"s{tag}.deferred",
        "partitions": 2,
        **kafka,
    }
    data["clickhouse"] |= {"database": f"secure_{tag}"}
    data["home"] = tmp_path / "home"
    data["worker"] |= {"app_id": f"secure-{tag}", "web_port": free_port(), "take_within_s": 0.1}
    return Settings.model_validate(data)


def changed(settings: Settings, **kafka: Any) -> Settings:
    data = settings.model_dump()
    data["kafka"] |= kafka
    return Settings.model_validate(data)


def one_line(result: Any) -> str:
    """The one `auditpipe:` line of a failed command (asserts there is one, no traceback)."""
    assert result.returncode == 3, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("auditpipe:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("mtls", [False, True], ids=["scram-over-tls", "mutual-tls"])
def test_the_whole_path_runs_over_the_secured_stack(
    secured: LocalStack, tmp_path: Path, mtls: bool
) -> None:
    settings = client(secured, tmp_path, mtls=mtls)
    assert settings.kafka.security_protocol == ("SSL" if mtls else "SASL_SSL")
    assert settings.clickhouse.url.startswith("https://")
    db = settings.clickhouse.database
    store = provision(settings)
    events = list(FleetSimulator(5, tenants=2, seed=3).events(400))
    shell = reverse_shell_event(str(uuid.uuid4()), "acme", "sb-secure", events[0]["ts"])
    with WorkerProcess(settings) as worker:
        publish_events(settings, [*events, shell])
        wait_for_rows(store, f"{db}.events", len(events) + 1)
        tail = run_cli(
            settings, "alerts", "tail", "--from-beginning", "--limit", "1", "--idle-timeout", "30"
        )
        assert "Traceback" not in worker.log()
    assert tail.returncode == 0, tail.stderr
    assert shell["event_id"] in tail.stdout
    assert scalar(store, f"SELECT uniqExact(event_id) FROM {db}.events") == len(events) + 1


def test_plaintext_clients_are_refused(secured: LocalStack, tmp_path: Path) -> None:
    settings = client(secured, tmp_path)
    plain = settings.model_dump()
    plain["kafka"] |= {"security_protocol": "PLAINTEXT", "ssl_cafile": None, "username": None}
    line = one_line(run_cli(Settings.model_validate(plain), "init"))
    assert "refused us" in line and "security_protocol" in line, line

    http = settings.model_dump()
    http["clickhouse"] |= {"url": settings.clickhouse.url.replace("https", "http"), "ca_file": None}
    line = one_line(run_cli(Settings.model_validate(http), "retention", "show"))
    assert "ClickHouse at http://" in line and "https" in line, line


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"password": "not-the-password"}, "authentication failed for user 'auditpipe'"),
        ({"username": "nobody"}, "authentication failed for user 'nobody'"),
        ({"ssl_cafile": "other-ca"}, "certificate is not trusted"),
        ({"ssl_cafile": None}, "certificate is not trusted"),
    ],
    ids=["wrong-password", "unknown-user", "another-ca", "system-cas"],
)
def test_a_refused_kafka_client_gets_the_cause_in_one_line(
    secured: LocalStack, tmp_path: Path, change: dict[str, Any], expected: str
) -> None:
    if change.get("ssl_cafile") == "other-ca":
        other = StackTLS(tmp_path / "other")
        other.ensure()
        change = {"ssl_cafile": other.ca}
    settings = client(secured, tmp_path, **change)
    for command in (("init",), ("worker",)):
        line = one_line(run_cli(settings, *command, timeout=120))
        assert expected in line, line
        assert "not-the-password" not in line


def test_the_mutual_tls_listener_wants_a_certificate_of_its_ca(
    secured: LocalStack, tmp_path: Path
) -> None:
    none = client(secured, tmp_path, mtls=True, ssl_certfile=None, ssl_keyfile=None)
    line = one_line(run_cli(none, "init"))
    assert "client certificate" in line, line

    other = StackTLS(tmp_path / "other")
    other.ensure()
    foreign = client(
        secured, tmp_path, mtls=True, ssl_certfile=other.client_cert, ssl_keyfile=other.client_key
    )
    line = one_line(run_cli(foreign, "init"))
    assert "refused us" in line, line


def test_a_principal_without_acls_is_told_what_it_may_not_use(
    secured: LocalStack, tmp_path: Path
) -> None:
    """A certificate of the stack's CA authenticates, but the authorizer allows its
    principal (User:CN=intruder) nothing: the worker stops before it starts, naming the
    topics."""
    assert secured.tls is not None
    cert, key = secured.tls.issue_client("intruder")
    allowed = client(secured, tmp_path, mtls=True)
    provision(allowed)  # the topics exist (made as CN=auditpipe)
    settings = changed(allowed, ssl_certfile=cert, ssl_keyfile=key)
    line = one_line(run_cli(settings, "worker", timeout=120))
    assert "not authorized (missing ACL)" in line and settings.kafka.topic_events in line, line


def test_clickhouse_refuses_a_wrong_password_and_an_unknown_ca(
    secured: LocalStack, tmp_path: Path
) -> None:
    settings = client(secured, tmp_path)
    wrong = settings.model_dump()
    wrong["clickhouse"] |= {"password": "not-it", "password_file": None}
    line = one_line(run_cli(Settings.model_validate(wrong), "retention", "show"))
    assert "refused user 'admin'" in line and "not-it" not in line, line

    unknown = settings.model_dump()
    unknown["clickhouse"] |= {"ca_file": None}
    line = one_line(run_cli(Settings.model_validate(unknown), "retention", "show"))
    assert "certificate is not trusted" in line, line

    # The engine's own login (passwordless `default`) reads nothing through the front.
    store = provision(settings)
    store.command(f"INSERT INTO {settings.clickhouse.database}.events (event_id) VALUES ('x')")
    as_default = settings.model_dump()
    as_default["clickhouse"] |= {"user": "default", "password": "", "password_file": None}
    engine_login = connect(Settings.model_validate(as_default).clickhouse)
    with pytest.raises(DatabaseError, match="ACCESS_DENIED"):
        engine_login.query(f"SELECT count() FROM {settings.clickhouse.database}.events")
    with pytest.raises(DatabaseError, match="ACCESS_DENIED"):
        engine_login.query("SELECT * FROM file('/etc/hostname', 'LineAsString')")
