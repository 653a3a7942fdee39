"""Signed checkpoints as a chain: written while idle and at a clean stop, and verify
finds checkpoints removed, rolled back, or removed together with the newest events."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import Settings
from pipeline.sim.simulate import FleetSimulator
from tests.integration.helpers import (
    WorkerProcess,
    collect_events,
    provision,
    run_cli,
    wait_for_rows,
    wait_until,
)

pytestmark = pytest.mark.integration


def heads(client: Any, db: str) -> dict[str, int]:
    return dict(client.query(
        f"SELECT sandbox_id, max(seq) FROM {db}.chain_checkpoints GROUP BY 1"
    ).result_rows)  # fmt: skip


def test_a_quiet_worker_signs_on_its_timer_and_at_a_clean_stop(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    settings = isolated_settings
    settings.checkpoints.interval_s = 3600  # no batch will ever be late enough
    client = provision(settings)
    db = settings.clickhouse.database
    collect_events(settings, tmp_path / "spool", list(FleetSimulator(2, seed=3).events(400)))
    worker = WorkerProcess(settings).start()
    try:
        wait_for_rows(client, f"{db}.events", 400)
        assert heads(client, db) == {}
    finally:
        assert worker.stop() == 0  # SIGTERM: a clean stop signs what advanced
    stored = dict(client.query(f"SELECT sandbox_id, max(seq) FROM {db}.events GROUP BY 1")
                  .result_rows)  # fmt: skip
    assert heads(client, db) == stored

    # Idle: the events come, then nothing; the timer signs them within the interval.
    settings.checkpoints.interval_s = 2
    more = list(FleetSimulator(2, seed=3).events(600))[400:]
    with WorkerProcess(settings):
        collect_events(settings, tmp_path / "spool", more)
        wait_for_rows(client, f"{db}.events", 600)
        stored = dict(client.query(f"SELECT sandbox_id, max(seq) FROM {db}.events GROUP BY 1")
                      .result_rows)  # fmt: skip
        wait_until(lambda: heads(client, db) == stored, 20, "no checkpoint while idle")
    counters = client.query(
        f"SELECT sandbox_id, groupArray(counter) FROM (SELECT * FROM {db}.chain_checkpoints "
        f"ORDER BY counter) GROUP BY 1"
    ).result_rows
    for _, numbers in counters:  # each sandbox's chain continued across the restart
        assert numbers == list(range(1, len(numbers) + 1))


def test_removed_and_rolled_back_checkpoints_are_found(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    settings = isolated_settings
    settings.checkpoints.interval_s = 0.3
    client = provision(settings)
    db = settings.clickhouse.database
    events = list(FleetSimulator(3, seed=9).events(3000))
    with WorkerProcess(settings):
        for start in range(0, 3000, 500):  # several batches: several checkpoints each
            collect_events(settings, tmp_path / "spool", events[start : start + 500])
            wait_for_rows(client, f"{db}.events", start + 500)
            time.sleep(0.6)
    counts = dict(client.query(
        f"SELECT sandbox_id, count() FROM {db}.chain_checkpoints GROUP BY 1 ORDER BY 1"
    ).result_rows)  # fmt: skip
    assert len(counts) == 3 and min(counts.values()) >= 3, counts
    first, second, third = sorted(counts)
    clean = run_cli(settings, "verify")
    assert clean.returncode == 0, clean.stdout + clean.stderr

    def mutate(sql: str) -> None:
        client.command(sql, settings={"mutations_sync": 2})

    # 1. The newest events of a sandbox and every checkpoint past them, together: the
    #    chains in ClickHouse are consistent, the Kafka copy is not.
    cut = client.command(
        f"SELECT max(seq) FROM {db}.chain_checkpoints WHERE sandbox_id = '{first}' AND counter = 2"
    )
    mutate(f"ALTER TABLE {db}.events DELETE WHERE sandbox_id = '{first}' AND seq > {cut}")
    mutate(f"ALTER TABLE {db}.chain_checkpoints DELETE WHERE sandbox_id = '{first}' "
           f"AND counter > 2")  # fmt: skip
    found = run_cli(settings, "verify", "--sandbox", first)
    assert found.returncode == 1, found.stdout + found.stderr
    assert "of the Kafka copy is not in ClickHouse" in found.stdout
    # Without the copy, nothing in ClickHouse shows it (which is why the copy exists).
    blind = run_cli(settings, "verify", "--sandbox", first, "--no-kafka-copy")
    assert blind.returncode == 0, blind.stdout

    # 2. A checkpoint removed from the middle of a chain.
    mutate(f"ALTER TABLE {db}.chain_checkpoints DELETE WHERE sandbox_id = '{second}' "
           f"AND counter = 2")  # fmt: skip
    gap = run_cli(settings, "verify", "--sandbox", second, "--no-kafka-copy")
    assert gap.returncode == 1
    assert "checkpoints 2..2 are missing: removed (or rolled back)" in gap.stdout

    # 3. The newest checkpoint rolled back to an older one (its row replaced).
    newest = counts[third]
    mutate(
        f"ALTER TABLE {db}.chain_checkpoints UPDATE counter = {newest}, prev_signature = "
        f"prev_signature WHERE sandbox_id = '{third}' AND counter = {newest - 1}"
    )
    mutate(f"ALTER TABLE {db}.chain_checkpoints DELETE WHERE sandbox_id = '{third}' "
           f"AND signed_at = (SELECT max(signed_at) FROM {db}.chain_checkpoints "
           f"WHERE sandbox_id = '{third}')")  # fmt: skip
    rolled = run_cli(settings, "verify", "--sandbox", third)
    assert rolled.returncode == 1
    assert "signature does not match" in rolled.stdout or "is not in ClickHouse" in rolled.stdout
