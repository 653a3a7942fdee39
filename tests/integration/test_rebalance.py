"""Two workers in one consumer group; one stops mid-stream and the other takes its
partitions over: nothing lost, nothing stored twice."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.collect.publisher import EventPublisher
from pipeline.config import Settings
from pipeline.schema import codec_for
from pipeline.sim.simulate import FleetSimulator
from tests.conftest import free_port
from tests.integration.helpers import WorkerProcess, provision, scalar, wait_for_rows, wait_until

pytestmark = pytest.mark.integration

EVENTS = 120_000


async def publish(settings: Settings, events: list[dict[str, object]]) -> None:
    async with EventPublisher(settings, codec_for(settings.kafka.schema_registry_url)) as publisher:
        await publisher.add_many(events)


def second_worker(settings: Settings) -> Settings:
    data = settings.model_dump()
    data["home"] = settings.home.parent / "home-b"
    data["worker"]["web_port"] = free_port()
    # Workers of one group share the key that signs progress and keys insert tokens.
    data["checkpoints"]["key_file"] = settings.home / "checkpoint.key"
    return Settings(**data)


def test_a_worker_stopped_mid_stream_loses_and_repeats_nothing(isolated_settings: Settings) -> None:
    settings = isolated_settings
    # Small messages and small takes: 300 takes, so the stop lands mid-stream however
    # fast the workers are (with 1,000-event messages they stored all before a poll).
    settings.publish.batch_events = 100
    settings.worker.take_messages = 4
    settings.worker.stall_timeout_s = 15
    client = provision(settings)
    table = f"{settings.clickhouse.database}.events"
    events = list(FleetSimulator(60, seed=12).events(EVENTS))
    asyncio.run(publish(settings, events))

    a = WorkerProcess(settings, name="worker-a").start()
    b = WorkerProcess(second_worker(settings), name="worker-b").start()
    try:
        wait_until(
            lambda: scalar(client, f"SELECT count() FROM {table}") > EVENTS // 5,
            120,
            "the workers did not start storing",
        )
        stored_when_stopped = scalar(client, f"SELECT count() FROM {table}")
        assert b.stop() == 0  # SIGTERM, mid-stream
        wait_for_rows(client, table, EVENTS, timeout=180)
    finally:
        a.stop()

    assert stored_when_stopped < EVENTS
    assert "Worker ready" in b.log()
    assert scalar(client, f"SELECT count() FROM {table}") == EVENTS
    assert scalar(client, f"SELECT uniqExact(event_id) FROM {table}") == EVENTS
