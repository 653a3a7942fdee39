"""`auditpipe verify` on a chain written by the collector and stored by the worker: a
clean chain passes, and each tamper trial is caught with the right finding."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from pipeline.collect.collector import Collector
from pipeline.config import Settings
from pipeline.simulate import FleetSimulator
from pipeline.verify import verify
from tests.integration.helpers import WorkerProcess, provision, run_cli, wait_for_rows

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

    result = run_cli(settings, "verify", "--sandbox", second)
    assert result.returncode == 1
    assert f"/{second} seq 201: seq 200..200 missing" in result.stdout
    assert result.stdout.startswith("deleted ")
