"""`auditpipe deadletter replay`: once the cause is fixed, dead letters go through again,
and each is replayed once."""

from __future__ import annotations

import asyncio
import time

import pytest

from pipeline.collect.publisher import EventPublisher
from pipeline.config import Settings
from pipeline.schema import codec_for
from pipeline.schema.event import normalize_event
from tests.integration.helpers import WorkerProcess, provision, run_cli, scalar, wait_for_rows

pytestmark = pytest.mark.integration


async def publish(settings: Settings, events: list[dict[str, object]]) -> None:
    async with EventPublisher(settings, codec_for(settings.kafka.schema_registry_url)) as publisher:
        await publisher.add_many(events)


def test_replay_after_a_fix_stores_the_dead_letters_once(isolated_settings: Settings) -> None:
    settings = isolated_settings
    settings.validation.max_future_s = 60  # too strict for a sandbox whose clock runs ahead
    client = provision(settings)
    db = settings.clickhouse.database
    now = time.time_ns() // 1_000_000
    ahead = [
        normalize_event(
            {
                "tenant": "acme",
                "sandbox_id": "sb-clock",
                "seq": n + 1,
                "category": "process",
                "action": "exec",
                "ts": now + 600_000 + n,
            },
            now_ms=now,
        )
        for n in range(3)
    ]
    with WorkerProcess(settings, name="strict"):
        asyncio.run(publish(settings, ahead))
        wait_for_rows(client, f"{db}.deadletter", 3)
    listed = run_cli(settings, "deadletter", "list")
    assert "ts_in_future" in listed.stdout and " 3 " in listed.stdout

    settings.validation.max_future_s = 3600  # the fix
    with WorkerProcess(settings, name="fixed"):
        dry = run_cli(settings, "deadletter", "replay", "--reason", "ts_in_future", "--dry-run")
        assert "would replay 3 dead letters" in dry.stdout
        first = run_cli(settings, "deadletter", "replay", "--reason", "ts_in_future")
        assert first.returncode == 0, first.stderr
        assert "replayed 3 events and 0 messages" in first.stdout
        wait_for_rows(client, f"{db}.events", 3)
        second = run_cli(settings, "deadletter", "replay", "--reason", "ts_in_future")
        assert "replayed 0 events" in second.stdout
        time.sleep(2)

    stored = client.query(f"SELECT event_id, seq FROM {db}.events ORDER BY seq").result_rows
    assert stored == [(e["event_id"], e["seq"]) for e in ahead]
    assert scalar(client, f"SELECT count() FROM {db}.deadletter") == 3  # no new ones
