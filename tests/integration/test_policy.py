"""The level policy on the real path: a change to its file takes effect without a restart,
and what it keeps back is counted in ClickHouse."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from pipeline.collect.publisher import EventPublisher
from pipeline.config import Settings
from pipeline.schema import codec_for
from pipeline.schema.event import normalize_event
from tests.integration.helpers import WorkerProcess, provision, scalar, wait_for_rows, wait_until

pytestmark = pytest.mark.integration


def batch(tag: str, seq_from: int) -> list[dict[str, object]]:
    now = time.time_ns() // 1_000_000
    return [
        normalize_event(
            {
                "tenant": "acme",
                "sandbox_id": "sb-policy",
                "seq": seq_from + n,
                "category": "file",
                "action": "read",
                "object": f"/{tag}/{n}",
                "level": level,
            },
            now_ms=now,
        )
        for n, level in enumerate(["debug", "info", "debug", "warning", "debug"])
    ]


async def publish(settings: Settings, events: list[dict[str, object]]) -> None:
    async with EventPublisher(settings, codec_for(settings.kafka.schema_registry_url)) as publisher:
        await publisher.add_many(events)


def test_policy_change_takes_effect_without_restart(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("default: debug\n")
    settings = isolated_settings
    settings.policy.file = policy
    client = provision(settings)
    db = settings.clickhouse.database

    with WorkerProcess(settings) as worker:
        asyncio.run(publish(settings, batch("a", 1)))
        wait_for_rows(client, f"{db}.events", 5)  # everything stored
        policy.write_text("default: info\n")
        time.sleep(0.1)
        asyncio.run(publish(settings, batch("b", 6)))
        wait_for_rows(client, f"{db}.events", 7)  # batch b: info and warning only
        wait_until(
            lambda: scalar(client, f"SELECT sum(events) FROM {db}.events_policy_rollup") == 3,
            60,
            "the rollup did not count batch b's debug events",
        )
        log = worker.log()

    stored = sorted(r[0] for r in client.query(f"SELECT object FROM {db}.events").result_rows)
    assert stored == ["/a/0", "/a/1", "/a/2", "/a/3", "/a/4", "/b/1", "/b/3"]
    rollup = client.query(
        f"SELECT sandbox_id, category, level, sum(events) FROM "
        f"{db}.events_policy_rollup GROUP BY ALL"
    ).result_rows
    assert rollup == [("sb-policy", "file", "debug", 3)]
    assert log.count("policy loaded from") == 2
