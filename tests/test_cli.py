"""The command-line contract, for every command: a one-line description in ``--help``,
``--config`` before or after the command's name, one exit-status table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import cli
from pipeline.commands import base
from pipeline.commands import rules as rules_command


def test_every_command_has_a_one_line_description() -> None:
    text = cli.build_parser().format_help()
    for name in cli.COMMANDS:
        lines = [line for line in text.splitlines() if line.strip().startswith(name + " ")]
        assert lines and len(lines[0].split(None, 1)) == 2, name


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_every_command_parses_its_help(name: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.build_parser().parse_args([name, "--help"])
    assert exit_.value.code == 0


def test_config_is_accepted_before_and_after_the_command(tmp_path: Path) -> None:
    config = tmp_path / "auditpipe.yaml"
    config.write_text("clickhouse: {database: from_the_file}\n")
    parser = cli.build_parser()
    for argv in (["--config", str(config), "verify"], ["verify", "--config", str(config)]):
        assert parser.parse_args(argv).config == str(config), argv
    assert parser.parse_args(["verify"]).config is None
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "config", "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "AUDITPIPE_HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    assert "database: from_the_file" in result.stdout


def test_the_exit_statuses_are_defined_once() -> None:
    assert (base.EXIT_OK, base.EXIT_PARTIAL, base.EXIT_USAGE, base.EXIT_UNAVAILABLE) == (0, 1, 2, 3)
    assert rules_command.EXIT_USAGE is base.EXIT_USAGE
    source = Path(cli.__file__).parent
    defined = [
        path.name
        for path in source.rglob("*.py")
        if "EXIT_OK, EXIT_PARTIAL" in path.read_text() and " = 0, 1" in path.read_text()
    ]
    assert defined == ["base.py"]


def test_a_usage_error_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "retention", "seal", "--margin-hours", "0"],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "AUDITPIPE_HOME": str(tmp_path)},
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "auditpipe: --margin-hours must be positive"


def test_config_never_prints_a_secret(tmp_path: Path) -> None:
    """Secrets from the environment, the file or a URL show masked; the password file is
    read by the client, and its path (not its content) is printed."""
    config = tmp_path / "auditpipe.yaml"
    config.write_text(
        "kafka: {schema_registry_url: 'https://reg:Reg1stry-Pw@registry.example.com'}\n"
        "clickhouse: {password_file: /run/secrets/ch}\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "AUDITPIPE_HOME": str(tmp_path),
        "AUDITPIPE_CLICKHOUSE_PASSWORD": "Ch-Pass-0042",
        "AUDITPIPE_CHECKPOINTS_KEY": "5f4dcc3b5aa765d61d8327deb882cf99",
    }
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "config", "--config", str(config)],
        capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for secret in ("Ch-Pass-0042", "5f4dcc3b5aa765d61d8327deb882cf99", "Reg1stry-Pw"):
        assert secret not in result.stdout
    assert "password: '**********'" in result.stdout
    assert "https://reg:****@registry.example.com" in result.stdout
    assert "password_file: /run/secrets/ch" in result.stdout


def test_the_clickhouse_password_comes_from_its_file(tmp_path: Path) -> None:
    from pipeline.config import ClickHouseConfig, ConfigError
    from pipeline.outputs.clickhouse.client import password

    secret = tmp_path / "ch"
    secret.write_text("from-the-file\n")
    assert password(ClickHouseConfig(password_file=secret)) == "from-the-file"
    assert password(ClickHouseConfig(password="given", password_file=secret)) == "given"
    with pytest.raises(ConfigError, match=r"clickhouse\.password_file"):
        password(ClickHouseConfig(password_file=tmp_path / "missing"))


def _failures(times: list[str]) -> str:
    return "".join(
        f'{{"category": "auth", "action": "login", "object": "sshd", "outcome": "failure", '
        f'"actor": {{"user": "u{n}"}}, "ts": "{t}"}}\n'
        for n, t in enumerate(times)
    )


def test_rules_test_events_takes_ts_as_real_event_times(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    quick = [f"2026-12-01T10:00:{s:02d}Z" for s in (0, 10, 20, 30, 40)]
    slow = [f"2026-12-01T10:{m:02d}:00Z" for m in (0, 1, 2, 3, 4)]  # 5 in 4 minutes
    (tmp_path / "quick.jsonl").write_text(_failures(quick))
    (tmp_path / "slow.jsonl").write_text(_failures(slow))
    assert cli.main(["rules", "test", "--events", str(tmp_path / "quick.jsonl")]) == 0
    out = capsys.readouterr().out
    brute = [line for line in out.splitlines() if '"AP-AUTH-001"' in line]
    assert len(brute) == 1
    assert '"first_ts":1796119200000' in brute[0] and '"last_ts":1796119240000' in brute[0]
    assert cli.main(["rules", "test", "--events", str(tmp_path / "slow.jsonl")]) == 0
    assert "AP-AUTH-001" not in capsys.readouterr().out


def test_rules_test_events_names_a_bad_time_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"category": "auth", "action": "login"}\n{"action": "x", "ts": "yesterday"}\n')
    assert cli.main(["rules", "test", "--events", str(bad)]) == 2
    assert capsys.readouterr().err.strip() == f"{bad}:2: ts: 'yesterday' is not RFC 3339"


def test_since_takes_a_time_ago_as_well_as_a_date(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base.time, "time", lambda: 1_800_000_000.0)
    now = 1_800_000_000_000
    assert base.since_ms("30d") == now - 30 * 86_400_000
    assert base.since_ms("90m") == now - 90 * 60_000
    assert base.since_ms("1.5h") == now - 5_400_000
    assert base.since_ms("2w") == now - 14 * 86_400_000
    assert base.since_ms("1795824000000") == 1_795_824_000_000
    assert base.since_ms("2026-11-28T00:00:00Z") == 1_795_824_000_000
    with pytest.raises(base.UsageError, match="--since"):
        base.since_ms("30 days")
