"""Materialized-view rollups: events per minute, and resource usage per sandbox per minute,
filled by inserts and, for rows stored before the migration, by the migration itself."""

from __future__ import annotations

import pytest

from pipeline.commands.init import apply_migrations, load_migrations
from pipeline.config import Settings
from pipeline.outputs.clickhouse.request_builder import EVENT_COLUMNS, build_event_columns
from pipeline.sim.simulate import FleetSimulator
from tests.integration.helpers import provision, scalar

pytestmark = pytest.mark.integration

MINUTE_MS = 60_000
START_MS = 1_795_000_020_000 // MINUTE_MS * MINUTE_MS


def samples() -> list[dict[str, object]]:
    template = next(iter(FleetSimulator(1, seed=5).events(1)))
    out = []
    for n, (cpu, mem) in enumerate([(10.0, 300), (30.0, 500), (95.0, 900), (5.0, 100)]):
        out.append(
            {
                **template,
                "event_id": f"r{n}",
                "category": "resource",
                "action": "sample",
                "level": "debug",
                "bytes": None,
                "attributes": {"cpu_pct": str(cpu), "mem_mb": str(mem)},
                "ts": START_MS + (0 if n < 3 else MINUTE_MS) + n,
                "kafka_partition": 0,
                "kafka_offset": n,
            }
        )
    out.append({**out[0], "event_id": "f1", "category": "file", "bytes": 4096, "attributes": {}})
    return out


def test_minute_rollups_follow_inserts_and_backfill(isolated_settings: Settings) -> None:
    db = isolated_settings.clickhouse.database
    client = provision(isolated_settings)
    rows = samples()
    client.insert(
        f"{db}.events", build_event_columns(rows), column_names=list(EVENT_COLUMNS),
        column_oriented=True,
    )  # fmt: skip
    per_minute = client.query(
        f"SELECT toUnixTimestamp(minute) * 1000, category, sum(events), sum(bytes) "
        f"FROM {db}.events_per_minute GROUP BY ALL ORDER BY ALL"
    ).result_rows
    assert per_minute == [
        (START_MS, "file", 1, 4096),
        (START_MS, "resource", 3, 0),
        (START_MS + MINUTE_MS, "resource", 1, 0),
    ]
    usage = client.query(
        f"SELECT toUnixTimestamp(minute) * 1000, sum(samples), avgMerge(cpu_pct), "
        f"max(cpu_pct_max), max(mem_mb_max) FROM {db}.resource_per_minute GROUP BY minute "
        "ORDER BY minute"
    ).result_rows
    assert usage == [(START_MS, 3, 45.0, 95.0, 900.0), (START_MS + MINUTE_MS, 1, 5.0, 5.0, 100.0)]

    # A database whose events predate the rollups: the migration fills them from the rows.
    client.command(f"DROP TABLE {db}.events_per_minute_mv")
    client.command(f"TRUNCATE TABLE {db}.events_per_minute")
    client.command(f"DELETE FROM {db}.schema_migrations WHERE version = 8")
    client.command(f"DROP TABLE {db}.resource_per_minute_mv")
    client.command(f"DROP TABLE {db}.resource_per_minute")
    apply_migrations(client, db, load_migrations())
    assert scalar(client, f"SELECT sum(events) FROM {db}.events_per_minute") == 5
