"""Dedup on the real path: the window survives a kill -9 of the worker (Faust table and
changelog), so a replay of the same events stores nothing twice."""

from __future__ import annotations

import asyncio
import time

import pytest

from pipeline.collect.publisher import EventPublisher
from pipeline.config import Settings
from pipeline.schema import codec_for
from pipeline.sim.simulate import FleetSimulator
from tests.integration.helpers import WorkerProcess, provision, scalar, wait_for_rows

pytestmark = pytest.mark.integration

EVENTS = 50_000
SANDBOXES = 20


async def publish(settings: Settings, events: list[dict[str, object]]) -> None:
    async with EventPublisher(settings, codec_for(settings.kafka.schema_registry_url)) as publisher:
        await publisher.add_many(events)


def test_replay_after_kill_9_stores_each_event_once(isolated_settings: Settings) -> None:
    settings = isolated_settings
    client = provision(settings)
    table = f"{settings.clickhouse.database}.events"
    sim = FleetSimulator(SANDBOXES, seed=9)
    events = list(sim.events(EVENTS))
    asyncio.run(publish(settings, events))

    worker = WorkerProcess(settings, name="first").start()
    wait_for_rows(client, table, EVENTS)
    time.sleep(2)  # offsets and the dedup changelog are flushed about every second
    worker.kill()  # kill -9: no clean shutdown

    # The same events again (a collector replaying), then one new event per sandbox: a
    # sandbox's messages stay in order in its partition, so once its sentinel is stored,
    # its replayed events have been through the worker.
    sentinels = list(sim.events(SANDBOXES))
    asyncio.run(publish(settings, [dict(e) for e in events] + sentinels))
    with WorkerProcess(settings, name="second") as second:
        wait_for_rows(client, table, EVENTS + SANDBOXES)
        time.sleep(1)
        log = second.log()

    assert scalar(client, f"SELECT count() FROM {table}") == EVENTS + SANDBOXES
    assert scalar(client, f"SELECT uniqExact(event_id) FROM {table}") == EVENTS + SANDBOXES
    assert "Traceback" not in log
