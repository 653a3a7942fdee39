"""A service that does not answer: one line naming it and the address, exit status 3,
never a traceback (no server needed: nothing listens on the ports used)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.conftest import free_port


def run(
    tmp_path: Path, *args: str, stdin: str = "", **extra_env: str
) -> subprocess.CompletedProcess[str]:
    env = {
        **extra_env,
        "PATH": "/usr/bin:/bin",
        "AUDITPIPE_HOME": str(tmp_path),
        "AUDITPIPE_CLICKHOUSE_URL": f"http://127.0.0.1:{free_port()}",
        "AUDITPIPE_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
    }
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "service"),
    [
        (("verify",), "ClickHouse"),
        (("deadletter", "list"), "ClickHouse"),
        (("publish", "-"), "Kafka"),
        (("init",), "Kafka"),
        (("simulate", "--events", "5"), "Kafka"),
        (("inventory", "put", "--sandbox-id", "s", "--tenant", "t"), "Kafka"),
        (("alerts", "tail", "--limit", "1", "--idle-timeout", "2"), "Kafka"),
        (("worker",), "Kafka"),
        (("retention", "show"), "ClickHouse"),
        (("hunt", "--since", "30d"), "ClickHouse"),
        (("export", "--since", "1d", "--out", "lake"), "ClickHouse"),
    ],
)
def test_a_service_down_gives_one_line_and_exit_3(
    tmp_path: Path, args: tuple[str, ...], service: str
) -> None:
    line = '{"tenant": "t", "sandbox_id": "s", "category": "api", "action": "x"}\n'
    result = run(tmp_path, *args, stdin=line)
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    messages = {m for m in result.stderr.splitlines() if m.startswith("auditpipe:")}
    assert len(messages) == 1, result.stderr
    (message,) = messages
    assert f"{service} at 127.0.0.1:" in message or f"{service} at http://127.0.0.1:" in message
    assert "did not answer" in message


def test_a_redaction_rule_re2_cannot_run_is_a_one_line_config_error(tmp_path: Path) -> None:
    result = run(tmp_path, "worker", "--help")  # parses; then the real start below
    assert result.returncode == 0
    env_rule = {"AUDITPIPE_REDACT_RULES": '{"mine": "(?=x)y"}'}
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "worker"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "AUDITPIPE_HOME": str(tmp_path), **env_rule},
        check=False,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("auditpipe: redact.rules.mine: ")
    assert "Traceback" not in proc.stderr


def test_collect_exits_3_while_events_are_still_spooled(tmp_path: Path) -> None:
    """Kafka never takes them: they stay in the spool (delivered at the next start), and
    the exit status says so instead of 0."""
    from pipeline.sim.simulate import FleetSimulator

    event = next(iter(FleetSimulator(1, seed=1).events(1)))
    for chained in ("seq", "hash", "prev_hash"):
        event.pop(chained, None)
    source = tmp_path / "events.jsonl"
    source.write_bytes(orjson.dumps(event) + b"\n")
    result = run(
        tmp_path,
        "collect",
        "--source",
        f"jsonl:{source}",
        AUDITPIPE_COLLECT_TRUST_SOURCE_IDENTITY="true",
        AUDITPIPE_COLLECT_EXIT_DELIVERY_TIMEOUT_S="2",
    )
    assert result.returncode == 3, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert "collected 1 events from 1 lines; 0 bad lines" in result.stdout
    (message,) = [m for m in result.stderr.splitlines() if m.startswith("auditpipe:")]
    assert "did not take 1 groups of events before exit: they stay spooled" in message
    assert list((tmp_path / "spool").rglob("*"))  # still there
