"""Retention and tamper evidence together: rows that expire by class leave `verify` with
nothing to report once sealed (`auditpipe retention seal`), while a deletion among them,
before or after sealing, is still found; a sandbox whose whole early history expired
verifies from its horizon on."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pipeline.chain.checkpoints import load_key
from pipeline.chain.seals import HORIZON_COLUMNS, HorizonRecord, sign_horizon
from pipeline.config import Settings
from pipeline.sim.simulate import FleetSimulator
from tests.integration.helpers import (
    WorkerProcess,
    collect_events,
    provision,
    run_cli,
    wait_for_rows,
)

pytestmark = pytest.mark.integration

PER_SANDBOX = 30
CLASSES = ["debug"] * 10 + ["security"] + ["info"] * 10 + ["security"] + ["debug"] * 8
"""The class of each sandbox's events by position (seq = position + 1): the newest
event, the signed head, is a debug one, so it expires too."""


def classed_events(seed: int, start_ms: int) -> list[dict[str, Any]]:
    events = list(FleetSimulator(2, seed=seed).events(2 * PER_SANDBOX, start_ms=start_ms))
    for n, event in enumerate(events):
        kind = CLASSES[n // 2]
        event["level"] = {"debug": "debug", "info": "info", "security": "warning"}[kind]
        event["category"], event["outcome"] = "file", "success"
        event["action"], event["object"] = "read", f"/work/file-{n}"
    return events


def store(settings: Settings, spool: Path, events: list[dict[str, Any]], total: int) -> Any:
    client = provision(settings)
    collect_events(settings, spool, events)
    with WorkerProcess(settings):
        wait_for_rows(client, f"{settings.clickhouse.database}.events", total)
    return client


def store_classed(
    settings: Settings, spool: Path, seed: int, seconds: tuple[float, float, float]
) -> tuple[Any, int]:
    """Two sandboxes' CLASSES events, stored with debug/info/security rows kept the
    given seconds; returns the client and when the events happened (epoch ms)."""
    days = [s / 86_400 for s in seconds]
    settings.retention.debug_days, settings.retention.info_days = days[0], days[1]
    settings.retention.security_days = days[2]
    start = time.time_ns() // 1_000_000
    return store(settings, spool, classed_events(seed, start), 2 * PER_SANDBOX), start


def findings(settings: Settings) -> tuple[int, list[str]]:
    result = run_cli(settings, "verify")
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stdout.splitlines() if not line.startswith("verified ")]
    return result.returncode, lines


def expire(settings: Settings, client: Any, until_ms: int) -> None:
    """Wait until ``until_ms``, then let the TTLs remove what expired."""
    time.sleep(max(0.0, (until_ms - time.time_ns() // 1_000_000) / 1000))
    applied = run_cli(settings, "retention", "apply")
    assert applied.returncode == 0, applied.stderr
    db = settings.clickhouse.database
    for table in ("events", "chain_seals", "chain_horizons"):
        client.command(f"OPTIMIZE TABLE {db}.{table} FINAL")


def test_expired_classes_verify_clean_and_a_deletion_among_them_is_found(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    settings = isolated_settings
    client, start = store_classed(settings, tmp_path / "spool", 5, (20, 35, 86_400))
    db = settings.clickhouse.database
    clean, other = (r[0] for r in client.query(
        f"SELECT DISTINCT sandbox_id FROM {db}.events ORDER BY 1").result_rows)  # fmt: skip

    def delete(sandbox: str, seq: int) -> None:
        client.command(
            f"ALTER TABLE {db}.events DELETE WHERE sandbox_id = '{sandbox}' AND seq = {seq}",
            settings={"mutations_sync": 2},
        )

    # An insider removes a debug row before its expiry was sealed: no seal spans the gap.
    delete(other, 4)
    sealed = run_cli(settings, "retention", "seal", "--margin-hours", "1")
    assert sealed.returncode == 0, sealed.stderr
    # Per sandbox: debug 1..10, info 12..21, debug 23..30 (the other: 1..3 and 5..10);
    # more seals only if a run's expiry crosses an hour.
    counts = re.search(
        r"sealed (\d+) chain items expiring within 1 h in (\d+) seals", sealed.stdout
    )
    assert counts, sealed.stdout
    assert int(counts[1]) == 55 and int(counts[2]) >= 7
    again = run_cli(settings, "retention", "seal", "--margin-hours", "1")
    assert "sealed 0 chain items" in again.stdout  # nothing twice
    # ... and after sealing, a security-relevant row among the expiring ones.
    delete(other, 11)

    expire(settings, client, start + 40_000)
    left = client.query(
        f"SELECT sandbox_id, groupArray(seq) FROM (SELECT sandbox_id, seq FROM {db}.events "
        f"ORDER BY seq) GROUP BY sandbox_id ORDER BY 1"
    ).result_rows
    assert left == [(clean, [11, 22]), (other, [22])]  # only the security rows stay

    status, lines = findings(settings)
    assert status == 1
    assert all(f"/{other} " in line for line in lines), lines
    assert any(line.startswith("deleted ") and "seq 4..4 missing" in line for line in lines)
    assert any(line.startswith("deleted ") and "seq 11..11 missing" in line for line in lines)

    # The clean sandbox alone: nothing to report, though most of its rows are gone.
    alone = run_cli(settings, "verify", "--sandbox", clean)
    assert alone.returncode == 0, alone.stdout + alone.stderr
    assert "0 findings" in alone.stdout


def test_a_forged_seal_is_a_finding_and_covers_nothing(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    settings = isolated_settings
    client, start = store_classed(settings, tmp_path / "spool", 6, (20, 20, 86_400))
    db = settings.clickhouse.database
    sandbox = client.query(f"SELECT min(sandbox_id) FROM {db}.events").result_rows[0][0]
    # Seal it, then an insider deletes the security row 22 and forges a seal over it
    # (a copy of a real one stretched over the gap: its signature no longer matches).
    assert run_cli(settings, "retention", "seal", "--margin-hours", "1").returncode == 0
    forged_prev = client.query(
        f"SELECT hash FROM {db}.events WHERE sandbox_id = '{sandbox}' AND seq = 21"
    ).result_rows[0][0]
    client.command(
        f"ALTER TABLE {db}.events DELETE WHERE sandbox_id = '{sandbox}' AND seq = 22",
        settings={"mutations_sync": 2},
    )
    client.insert(
        f"{db}.chain_seals",
        [[*row[:2], 22, row[3], forged_prev, *row[5:]] for row in client.query(
            f"SELECT * FROM {db}.chain_seals WHERE sandbox_id = '{sandbox}' AND first_seq = 23"
        ).result_rows],
    )  # fmt: skip
    expire(settings, client, start + 25_000)
    status, lines = findings(settings)
    assert status == 1
    assert any(line.startswith("forged ") and "signature does not match" in line
               for line in lines), lines  # fmt: skip
    # ... and the gap it was forged to hide is reported as well.
    assert any(line.startswith("deleted ") and "seq 22..22 missing" in line for line in lines)


def test_a_sandbox_whose_early_history_expired_verifies_from_its_horizon(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    settings = isolated_settings
    spool = tmp_path / "spool"
    client, start = store_classed(settings, spool, 7, (15, 15, 25))
    sealed = run_cli(settings, "retention", "seal", "--margin-hours", "1")
    assert sealed.returncode == 0, sealed.stderr
    assert "2 sandbox horizons advanced" in sealed.stdout
    expire(settings, client, start + 30_000)
    db = settings.clickhouse.database
    assert client.command(f"SELECT count() FROM {db}.events") == 0
    assert client.command(f"SELECT count() FROM {db}.chain_seals") == 0  # expired too

    # The sandboxes go on: their chains continue from the expired history.
    later = classed_events(7, time.time_ns() // 1_000_000)
    for event in later:
        event["event_id"] += "-later"
    collect_events(settings, spool, later)
    with WorkerProcess(settings):
        wait_for_rows(client, f"{db}.events", 2 * PER_SANDBOX)
    assert client.command(f"SELECT min(seq) FROM {db}.events") == PER_SANDBOX + 1
    status, lines = findings(settings)
    assert (status, lines) == (0, [])


def test_a_checkpoint_chain_whose_start_expired_goes_on_from_the_horizon(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    """A sandbox's checkpoints 1..5 expired (a year old) and its horizon recorded the
    fifth: the worker's next checkpoint is the sixth, linked to it, and verifies."""
    settings = isolated_settings
    client = provision(settings)
    db = settings.clickhouse.database
    events = classed_events(8, time.time_ns() // 1_000_000)
    tenant, sandbox = events[0]["tenant"], events[0]["sandbox_id"]
    key = load_key(settings)
    fifth = bytes(range(32))
    horizon = HorizonRecord(tenant, sandbox, 0, "00" * 32, 5, fifth.hex(), 1_000, 1_000_000)
    client.insert(
        f"{db}.chain_horizons",
        [[tenant, sandbox, 0, bytes(32), 5, fifth, datetime.fromtimestamp(1_000, UTC),
          datetime.fromtimestamp(1_000, UTC), settings.checkpoints.key_id,
          sign_horizon(key, horizon)]],
        column_names=list(HORIZON_COLUMNS),
    )  # fmt: skip
    collect_events(settings, tmp_path / "spool", events)
    with WorkerProcess(settings):
        wait_for_rows(client, f"{db}.events", len(events))
    counters = client.query(
        f"SELECT counter, prev_signature FROM {db}.chain_checkpoints "
        f"WHERE tenant = '{tenant}' AND sandbox_id = '{sandbox}' ORDER BY counter"
    ).result_rows
    assert counters[0] == (6, fifth), counters
    status, lines = findings(settings)
    assert (status, lines) == (0, [])
