"""Enrichment on the real path: the inventory written by `auditpipe inventory` reaches
the stored rows (a stream-table join); events of unknown sandboxes are kept and counted."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest

from pipeline.collect.publisher import EventPublisher
from pipeline.commands.init import apply_migrations, load_migrations
from pipeline.config import Settings
from pipeline.schema import codec_for
from pipeline.schema.event import normalize_event
from tests.integration.helpers import (
    WorkerProcess,
    provision,
    run_cli,
    scalar,
    wait_for_metrics,
    wait_for_rows,
)

pytestmark = pytest.mark.integration


def event(sandbox: str, seq: int, **fields: object) -> dict[str, object]:
    return normalize_event(
        {
            "tenant": "acme",
            "sandbox_id": sandbox,
            "seq": seq,
            "category": "file",
            "action": "read",
            "object": "/etc/hosts",
            **fields,
        },
        now_ms=time.time_ns() // 1_000_000,
    )


async def publish(settings: Settings, events: list[dict[str, object]]) -> None:
    async with EventPublisher(settings, codec_for(settings.kafka.schema_registry_url)) as publisher:
        await publisher.add_many(events)


def test_events_gain_their_sandbox_and_unknown_ones_are_counted(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    settings = isolated_settings
    client = provision(settings)
    put = run_cli(
        settings,
        "inventory",
        "put",
        "--sandbox-id",
        "sb-known",
        "--tenant",
        "acme",
        "--owner",
        "ana@team-ml",
        "--environment",
        "prod-replica",
        "--image",
        "python:3.11-slim",
        "--label",
        "team=ml",
        "--label",
        "tier=gold",
    )
    assert put.returncode == 0, put.stderr
    inventory = tmp_path / "inventory.jsonl"
    inventory.write_bytes(
        orjson.dumps({"sandbox_id": "sb-dev", "tenant": "acme", "environment": "dev"})
        + b"\n{broken\n"
    )
    loaded = run_cli(settings, "inventory", "load", str(inventory))
    assert loaded.returncode == 1 and "line 2: invalid JSON" in loaded.stderr
    assert "1 sandboxes written" in loaded.stdout

    events = [
        event("sb-known", 1),
        event("sb-known", 2, outcome="denied"),
        event("sb-dev", 1),
        event("sb-nobody", 1),
        event("sb-nobody", 2),
    ]
    asyncio.run(publish(settings, events))
    db = settings.clickhouse.database
    with WorkerProcess(settings):
        wait_for_rows(client, f"{db}.events", len(events))
        metrics = wait_for_metrics(settings, "auditpipe_events_unknown_sandbox_total 2.0")

    rows = client.query(
        f"SELECT sandbox_id, seq, owner, environment, image, labels, "
        f"sandbox_known, severity FROM {db}.events ORDER BY sandbox_id, seq"
    ).result_rows
    assert rows == [
        ("sb-dev", 1, "", "dev", "", {}, True, "low"),
        (
            "sb-known",
            1,
            "ana@team-ml",
            "prod-replica",
            "python:3.11-slim",
            {"team": "ml", "tier": "gold"},
            True,
            "low",
        ),
        (
            "sb-known",
            2,
            "ana@team-ml",
            "prod-replica",
            "python:3.11-slim",
            {"team": "ml", "tier": "gold"},
            True,
            "medium",
        ),
        ("sb-nobody", 1, "", "unknown", "", {}, False, "low"),
        ("sb-nobody", 2, "", "unknown", "", {}, False, "low"),
    ]
    assert "auditpipe_events_unknown_sandbox_total 2.0" in metrics


def test_a_column_migration_runs_on_a_table_with_data(isolated_settings: Settings) -> None:
    from pipeline.outputs.clickhouse.client import connect

    settings = isolated_settings
    client = connect(settings.clickhouse)
    db = settings.clickhouse.database
    migrations = load_migrations()
    apply_migrations(client, db, [m for m in migrations if m.version < 3])
    client.command(
        f"INSERT INTO {db}.events (event_id, ts, tenant, sandbox_id, seq, category, "
        f"action, level, outcome, kafka_partition, kafka_offset) VALUES "
        f"('old-1', now64(3), 'acme', 'sb-old', 1, 'file', 'read', 'info', "
        f"'success', 0, 0)"
    )

    applied = apply_migrations(client, db, migrations)

    assert applied == [m.name for m in migrations if m.version >= 3]
    row = client.query(
        f"SELECT event_id, environment, sandbox_known, severity FROM {db}.events"
    ).result_rows
    assert row == [("old-1", "", False, "low")]
    assert scalar(client, f"SELECT count() FROM {db}.schema_migrations") == len(migrations)
