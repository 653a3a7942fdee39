"""A Kafka record batch that would decompress to gigabytes (a zstd bomb, sent with a
producer credential) becomes dead letters, never memory: the worker stays small and the
events after it are stored."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from pipeline.chain.hashing import chain_key
from pipeline.config import Settings
from pipeline.sim.simulate import FleetSimulator
from tests.integration.helpers import (
    WorkerProcess,
    provision,
    publish_events,
    scalar,
    wait_for_rows,
)

pytestmark = pytest.mark.integration

BOMB_BYTES = 1 << 30
"""What the batch decompresses to: 1 GiB of zeros, about 33 KB as zstd."""


async def send_bomb(settings: Settings) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap,
        compression_type="zstd",
        max_request_size=BOMB_BYTES + (1 << 20),  # checked before compression
    )
    await producer.start()
    try:
        key = chain_key("acme", "sb-bomb").encode()
        for _ in range(3):  # three batches of one record each
            await (await producer.send(settings.kafka.topic_events, bytes(BOMB_BYTES), key=key))
    finally:
        await producer.stop()


def test_a_decompression_bomb_is_dead_lettered_and_the_partition_goes_on(
    isolated_settings: Settings,
) -> None:
    settings = isolated_settings
    settings.kafka.partitions = 1
    client = provision(settings)
    db = settings.clickhouse.database
    asyncio.run(send_bomb(settings))
    events = list(FleetSimulator(3, seed=12).events(2_000))
    publish_events(settings, events)

    with WorkerProcess(settings) as worker:
        wait_for_rows(client, f"{db}.events", len(events))
        assert worker.proc is not None
        status = Path(f"/proc/{worker.proc.pid}/status").read_text()
        peak = int(
            next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]
        )

    dead = client.query(
        f"SELECT reason, count(), max(length(original)) FROM {db}.deadletter GROUP BY reason"
    ).result_rows
    assert dead == [("batch_too_large", 3, 0)]
    assert peak < 1 << 20, f"worker peak RSS {peak >> 10} MiB"  # kB: under 1 GiB
    assert scalar(client, f"SELECT count() FROM {db}.events") == len(events)
    assert "batch_too_large" in worker.log() or "not decompressed" in worker.log()
