"""`auditpipe verify` on a chain written by the collector and stored by the worker: a
clean chain passes, and each tamper trial is caught with the right finding."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest

from pipeline.chain.hashing import ChainHead
from pipeline.chain.verify import verify
from pipeline.collect.collector import Collector
from pipeline.config import Settings
from pipeline.outputs.clickhouse.request_builder import EVENT_COLUMNS, build_event_columns
from pipeline.sim.simulate import FleetSimulator
from tests.integration.helpers import (
    WorkerProcess,
    provision,
    run_cli,
    wait_for_rows,
    wait_until,
)

pytestmark = pytest.mark.integration

EVENTS = 3000


def store_chain(settings: Settings, spool: Path) -> Any:
    settings.redact.enabled = False
    client = provision(settings)

    async def emit() -> None:
        async with Collector(settings, spool_dir=spool) as collector:
            await collector.emit_many(FleetSimulator(3, seed=21).events(EVENTS))

    asyncio.run(emit())
    with WorkerProcess(settings):
        wait_for_rows(client, f"{settings.clickhouse.database}.events", EVENTS)
    return client


def test_clean_chain_passes_and_every_tamper_trial_is_caught(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    settings = isolated_settings
    client = store_chain(settings, tmp_path / "spool")
    table = f"{settings.clickhouse.database}.events"

    def tamper(sql: str) -> None:
        client.command(sql.replace("{t}", table), settings={"mutations_sync": 2})

    def found() -> set[tuple[str, int]]:
        report = verify(client, settings.clickhouse.database)
        return {(f.kind, f.seq) for f in report.findings}

    clean = run_cli(settings, "verify")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert f"verified {EVENTS:,} chained events of 3 sandboxes" in clean.stdout
    assert "0 findings" in clean.stdout
    first, second, third = (
        r[0]
        for r in client.query(f"SELECT DISTINCT sandbox_id FROM {table} ORDER BY 1").result_rows
    )

    # 1. change a stored row's object
    tamper(
        f"ALTER TABLE {{t}} UPDATE object = '/etc/benign' "
        f"WHERE sandbox_id = '{first}' AND seq = 100"
    )
    assert found() == {("modified", 100)}

    # 2. delete a row
    tamper(f"ALTER TABLE {{t}} DELETE WHERE sandbox_id = '{second}' AND seq = 200")
    assert {("deleted", 201), ("relinked", 201)} <= found()

    # 3. insert a forged row (a copy of a real one, with other content)
    tamper(
        f"INSERT INTO {{t}} SELECT * REPLACE ('forged-1' AS event_id, '/tmp/forged' AS "
        f"object) FROM {{t}} WHERE sandbox_id = '{third}' AND seq = 300"
    )
    assert {("inserted", 300), ("modified", 300)} <= found()

    # 4. swap two rows' seq (a key column: rewrite the rows, as an attacker would)
    ids = dict(
        client.query(
            f"SELECT seq, event_id FROM {table} WHERE sandbox_id = '{first}' AND seq IN (400, 401)"
        ).result_rows
    )
    tamper(
        f"INSERT INTO {{t}} SELECT * REPLACE (if(seq = 400, 401, 400) AS seq) FROM {{t}} "
        f"WHERE sandbox_id = '{first}' AND seq IN (400, 401)"
    )
    tamper(
        f"ALTER TABLE {{t}} DELETE WHERE sandbox_id = '{first}' AND "
        f"((seq = 400 AND event_id = '{ids[400]}') OR (seq = 401 AND event_id = '{ids[401]}'))"
    )
    assert {("modified", 400), ("modified", 401)} <= found()

    # 5. the parent process (schema v2): the clean run above checked rows that have one;
    # changing it, or clearing it so the row looks like a v1 event, is caught
    with_parent = client.query(
        f"SELECT seq FROM {table} WHERE sandbox_id = '{third}' AND seq > 500 "
        "AND actor_parent_cmdline != '' ORDER BY seq LIMIT 2"
    ).result_rows
    (changed,), (cleared,) = with_parent
    tamper(
        f"ALTER TABLE {{t}} UPDATE actor_parent_cmdline = 'bash -e harmless.sh' "
        f"WHERE sandbox_id = '{third}' AND seq = {changed}"
    )
    tamper(
        f"ALTER TABLE {{t}} UPDATE actor_parent_process = '', actor_parent_cmdline = '' "
        f"WHERE sandbox_id = '{third}' AND seq = {cleared}"
    )
    assert {("modified", changed), ("modified", cleared)} <= found()

    result = run_cli(settings, "verify", "--sandbox", second)
    assert result.returncode == 1
    assert f"/{second} seq 201: seq 200..200 missing" in result.stdout
    assert result.stdout.startswith("deleted ")


def test_a_rewritten_history_is_caught_by_the_signed_checkpoints(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    settings = isolated_settings
    settings.checkpoints.interval_s = 0.2
    client = store_chain(settings, tmp_path / "spool")
    db = settings.clickhouse.database
    table = f"{db}.events"
    checkpoints = client.query(
        f"SELECT sandbox_id, max(seq) FROM {db}.chain_checkpoints GROUP BY sandbox_id ORDER BY 1"
    ).result_rows
    last = dict(client.query(f"SELECT sandbox_id, max(seq) FROM {table} GROUP BY 1").result_rows)
    assert len(checkpoints) == 3 and all(seq == last[s] for s, seq in checkpoints)
    clean = run_cli(settings, "verify")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    # At least one head per sandbox; a slower run signs more (every interval_s).
    checked = re.search(r"(\d+) signed checkpoints checked; 0 findings", clean.stdout)
    assert checked is not None and int(checked.group(1)) >= 3, clean.stdout

    # Rewrite one sandbox's history from seq 10 on, every hash recomputed: the chain
    # itself verifies again, the signed head does not.
    sandbox = checkpoints[0][0]
    result = client.query(
        f"SELECT * FROM {table} WHERE sandbox_id = '{sandbox}' AND seq >= 10 ORDER BY seq"
    )
    rows = [dict(zip(result.column_names, r, strict=True)) for r in result.result_rows]
    previous = client.query(
        f"SELECT hash FROM {table} WHERE sandbox_id = '{sandbox}' AND seq = 9"
    ).result_rows[0][0]
    head = ChainHead(9, bytes(previous))
    forged = []
    for row in rows:
        event = {
            **row,
            "ts": int(row["ts"].replace(tzinfo=UTC).timestamp() * 1000 + 0.5),
            "object": "/workspace/innocent" if row["seq"] == 10 else row["object"],
            "actor": {
                k: row[f"actor_{k}"] for k in ("user", "uid", "pid", "ppid", "process", "cmdline")
            },
        }
        forged.append(head.seal(event))
    client.command(
        f"ALTER TABLE {table} DELETE WHERE sandbox_id = '{sandbox}' AND seq >= 10",
        settings={"mutations_sync": 2},
    )
    client.insert(
        table, build_event_columns(forged), column_names=list(EVENT_COLUMNS), column_oriented=True
    )
    assert verify(client, db, sandbox=sandbox).findings == []  # the chain alone is fooled
    caught = run_cli(settings, "verify", "--sandbox", sandbox)
    assert caught.returncode == 1
    assert "is not the signed" in caught.stdout and "history rewritten" in caught.stdout

    # A checkpoint re-signed by someone without the key is caught too.
    client.command(
        f"ALTER TABLE {db}.chain_checkpoints UPDATE hash = unhex(repeat('ab', 32)) "
        f"WHERE sandbox_id = '{checkpoints[1][0]}'",
        settings={"mutations_sync": 2},
    )
    forged_sig = run_cli(settings, "verify", "--sandbox", checkpoints[1][0])
    assert forged_sig.returncode == 1
    assert "signature does not match: forged or altered checkpoint" in forged_sig.stdout

    # Without the key, signed checkpoints cannot be checked: exit 3, one line.
    key_file = settings.home / "checkpoint.key"
    key = key_file.read_bytes()
    key_file.unlink()
    no_key = run_cli(settings, "verify")
    assert no_key.returncode == 3, no_key.stdout + no_key.stderr
    assert no_key.stderr.strip().splitlines() == [
        f"auditpipe: signed checkpoints exist but cannot be checked: no checkpoint key: "
        f"set checkpoints.key, or the file {key_file} is missing"
    ]
    key_file.write_bytes(key)

    # Dropping the checkpoints (every signed head at once) is a finding, not a pass.
    client.command(f"DROP TABLE {db}.chain_checkpoints")
    dropped = run_cli(settings, "verify")
    assert dropped.returncode == 1, dropped.stdout + dropped.stderr
    assert f"{db}.chain_checkpoints is missing" in dropped.stdout


def test_collapsed_repeats_keep_the_chain_verifiable(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    settings = isolated_settings
    settings.redact.enabled = False
    client = provision(settings)
    table = f"{settings.clickhouse.database}.events"
    base = list(FleetSimulator(1, seed=5).events(200))
    poll = base[99] | {"category": "api", "action": "call", "object": "GET /status"}
    polls = [poll | {"event_id": f"poll-{n}", "ts": poll["ts"] + n} for n in range(20)]

    async def emit() -> None:
        async with Collector(settings, spool_dir=tmp_path / "spool") as collector:
            await collector.emit_many(base[:100] + polls + base[100:])

    asyncio.run(emit())
    with WorkerProcess(settings):
        wait_for_rows(client, table, 220 - 19)
    assert client.command(f"SELECT sum(repeat_count) FROM {table}") == 220
    assert client.command(f"SELECT repeat_count FROM {table} WHERE event_id = 'poll-0'") == 20

    clean = run_cli(settings, "verify")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "19 collapsed repeats" in clean.stdout and "0 findings" in clean.stdout

    # Hide the last repeat: its seq is missing and the next event no longer links.
    last_seq = client.command(f"SELECT max(seq) FROM {table} ARRAY JOIN repeat_seqs AS seq")
    client.command(
        f"ALTER TABLE {table} UPDATE repeat_seqs = arrayPopBack(repeat_seqs), "
        f"repeat_hashes = arrayPopBack(repeat_hashes), "
        f"repeat_prev_hashes = arrayPopBack(repeat_prev_hashes) WHERE event_id = 'poll-0'",
        settings={"mutations_sync": 2},
    )
    found = {(f.kind, f.seq) for f in verify(client, settings.clickhouse.database).findings}
    assert {("deleted", last_seq + 1), ("relinked", last_seq + 1)} <= found


def test_events_kept_back_by_the_policy_keep_the_chain_verifiable(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    settings = isolated_settings
    settings.redact.enabled = False
    policy = tmp_path / "policy.yaml"
    policy.write_text("default: info\n")
    settings.policy.file = policy
    client = provision(settings)
    table = f"{settings.clickhouse.database}.events"
    events = list(FleetSimulator(2, seed=9).events(600))
    for n, event in enumerate(events):
        event["level"] = "debug" if n % 3 == 0 else "info"  # a third kept back

    async def emit() -> None:
        async with Collector(settings, spool_dir=tmp_path / "spool") as collector:
            await collector.emit_many(events)

    asyncio.run(emit())
    links = f"{settings.clickhouse.database}.chain_links"
    with WorkerProcess(settings):
        wait_until(
            lambda: (
                client.command(f"SELECT count() FROM {table}")
                + client.command(f"SELECT count() FROM {links}")
                == 600
            ),
            120,
            "not every event is stored or linked",
        )
    # Debug events a rule matched (as a step or a threshold's condition) are stored.
    stored_debug = client.command(f"SELECT count() FROM {table} WHERE level = 'debug'")
    assert client.command(f"SELECT count() FROM {links}") == 200 - stored_debug > 0

    clean = run_cli(settings, "verify")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert f"{200 - stored_debug} kept back by the level policy" in clean.stdout
    assert "0 findings" in clean.stdout

    # A link removed is a hole in the chain again.
    sandbox, seq = client.query(
        f"SELECT sandbox_id, seq FROM {settings.clickhouse.database}.chain_links "
        f"ORDER BY sandbox_id, seq LIMIT 1 OFFSET 10"
    ).result_rows[0]
    client.command(
        f"ALTER TABLE {settings.clickhouse.database}.chain_links DELETE "
        f"WHERE sandbox_id = '{sandbox}' AND seq = {seq}",
        settings={"mutations_sync": 2},
    )
    found = {(f.kind, f.seq) for f in verify(client, settings.clickhouse.database).findings}
    assert {("deleted", seq + 1), ("relinked", seq + 1)} <= found


def test_with_redaction_on_every_row_is_checked_and_the_marker_exempts_none(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    settings = isolated_settings
    assert settings.redact.enabled  # the default: masked at the collector, before sealing
    client = provision(settings)
    db = settings.clickhouse.database
    events = list(FleetSimulator(2, seed=8).events(300))
    for n, event in enumerate(events[::10]):
        event["actor"]["cmdline"] = f"mysql -h db --password=Hunter2-{n} -e 'select 1'"

    async def emit() -> None:
        async with Collector(settings, spool_dir=tmp_path / "spool") as collector:
            await collector.emit_many(events)

    asyncio.run(emit())
    with WorkerProcess(settings):
        wait_for_rows(client, f"{db}.events", len(events))
    assert client.command(f"SELECT countIf(actor_cmdline LIKE '%Hunter2%') FROM {db}.events") == 0
    masked = client.command(
        f"SELECT count() FROM {db}.events WHERE mapContains(attributes, 'auditpipe.redacted')"
    )
    assert masked == 30
    clean = run_cli(settings, "verify")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "30 masked at the edge (content checked)" in clean.stdout
    assert "0 findings" in clean.stdout

    # An insider changes a masked row and keeps its marker: found like any other.
    client.command(
        f"ALTER TABLE {db}.events UPDATE actor_cmdline = 'true' WHERE event_id = "
        f"'{events[50]['event_id']}'",
        settings={"mutations_sync": 2},
    )
    caught = run_cli(settings, "verify")
    assert caught.returncode == 1
    assert caught.stdout.startswith("modified ")
    assert f"seq {events[50]['seq']}:" in caught.stdout


def test_strict_reports_unchained_rows_of_a_chained_tenant(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    settings = isolated_settings
    client = store_chain(settings, tmp_path / "spool")
    db = settings.clickhouse.database
    tenant, sandbox = client.query(
        f"SELECT tenant, sandbox_id FROM {db}.events LIMIT 1"
    ).result_rows[0]
    # A row inserted past the collectors (a stolen ingest credential): no chain.
    client.command(
        f"INSERT INTO {db}.events (event_id, tenant, sandbox_id, seq, ts, category, action, "
        f"level, outcome, object) VALUES ('forged', '{tenant}', '{sandbox}', 0, now64(3), "
        f"'file', 'read', 'info', 'success', '/etc/innocent')"
    )
    lenient = run_cli(settings, "verify")
    assert lenient.returncode == 0, lenient.stdout + lenient.stderr
    assert "1 without a chain" in lenient.stdout
    strict = run_cli(settings, "verify", "--strict")
    assert strict.returncode == 1, strict.stdout + strict.stderr
    assert f"unchained {tenant}/{sandbox} seq 0: 1 rows without a chain (e.g. forged)" in (
        strict.stdout
    )
