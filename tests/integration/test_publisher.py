"""The publisher on a real broker: every event arrives once, in seq order per sandbox,
also while partly filled batches are flushed by the linger timer and at close."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest
from aiokafka import AIOKafkaConsumer

from pipeline.chain.hashing import chain_key
from pipeline.collect.publisher import EventPublisher
from pipeline.commands.init import create_topics
from pipeline.config import Settings
from pipeline.schema import codec_for
from pipeline.sim.simulate import FleetSimulator

pytestmark = pytest.mark.integration

EVENTS = 60_000


async def publish(settings: Settings) -> int:
    sim = FleetSimulator(300, seed=8)
    async with EventPublisher(settings, codec_for(settings.kafka.schema_registry_url)) as publisher:
        for n, event in enumerate(sim.events(EVENTS)):
            await publisher.add(event)
            if n % 5000 == 0:
                await asyncio.sleep(0.003)  # let the linger timer take partial batches
    return publisher.stats.events


async def read_back(settings: Settings) -> dict[str, list[int]]:
    codec = codec_for(settings.kafka.schema_registry_url)
    consumer = AIOKafkaConsumer(
        settings.kafka.topic_events,
        bootstrap_servers=settings.kafka.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    seqs: dict[str, list[int]] = defaultdict(list)
    seen = 0
    try:
        async with asyncio.timeout(120):
            while seen < EVENTS:
                batches = await consumer.getmany(timeout_ms=1000)
                for records in batches.values():
                    for record in records:
                        batch = codec.decode(record.value).record
                        for event in batch["events"]:
                            # The key names the chain: tenant and sandbox.
                            assert (
                                record.key
                                == chain_key(event["tenant"], batch["sandbox_id"]).encode()
                            )
                            seqs[event["sandbox_id"]].append(event["seq"])
                            seen += 1
            await asyncio.sleep(1)  # anything beyond EVENTS would be a duplicate
            extra = await consumer.getmany(timeout_ms=1000)
            assert not any(extra.values())
    finally:
        await consumer.stop()
    return seqs


def test_every_event_once_and_in_order_with_linger_flushes(isolated_settings: Settings) -> None:
    settings = isolated_settings
    settings.publish.linger_ms = 1
    settings.publish.batch_events = 500
    asyncio.run(create_topics(settings))

    acknowledged = asyncio.run(publish(settings))
    seqs = asyncio.run(read_back(settings))

    assert acknowledged == EVENTS
    assert sum(len(s) for s in seqs.values()) == EVENTS
    assert len(seqs) == 300
    for sandbox, numbers in seqs.items():
        assert numbers == list(range(1, len(numbers) + 1)), sandbox
