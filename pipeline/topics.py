"""Reading a Kafka topic from a position to its end, once (the checkpoints' second copy
for ``verify``, the events a recovering collector delivered before a crash).

Each partition is read up to the end offset it had when asked; what arrives after that
is not waited for. A topic that does not exist yet is empty.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline.config import KafkaConfig
from pipeline.kafka_clients import client_args


async def read_to_end(
    kafka: KafkaConfig,
    topic: str,
    on_record: Callable[[Any], None],
    *,
    client_id: str,
    since_ms: int | None = None,
    timeout_s: float | None = None,
) -> None:
    """Call ``on_record`` with every record of ``topic``, in order within a partition,
    from its first offset (or the first at or after ``since_ms``) to its end. Raises
    TimeoutError after ``timeout_s`` (None: no limit)."""
    consumer = AIOKafkaConsumer(**client_args(kafka), enable_auto_commit=False, client_id=client_id)
    await consumer.start()
    try:
        if topic not in await consumer.topics():
            return
        partitions = consumer.partitions_for_topic(
            topic
        ) or await consumer._client._wait_on_metadata(topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return
        consumer.assign(tps)
        remaining = await _positions(consumer, tps, since_ms)
        async with asyncio.timeout(timeout_s):
            while remaining:
                batch = await consumer.getmany(*remaining, timeout_ms=1000)
                for tp, records in batch.items():
                    for record in records:
                        on_record(record)
                    if records and records[-1].offset + 1 >= remaining.get(tp, 0):
                        remaining.pop(tp, None)
    finally:
        await consumer.stop()


async def _positions(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], since_ms: int | None
) -> dict[TopicPartition, int]:
    """Seek each partition to where reading starts; returns the end offset of each that
    has anything to read."""
    ends = await consumer.end_offsets(tps)
    if since_ms is None:
        starts = await consumer.beginning_offsets(tps)
    else:
        found = await consumer.offsets_for_times(dict.fromkeys(tps, max(since_ms, 0)))
        starts = {tp: found[tp].offset if found.get(tp) is not None else ends[tp] for tp in tps}
    remaining = {}
    for tp in tps:
        if starts[tp] < ends[tp]:
            consumer.seek(tp, starts[tp])
            remaining[tp] = ends[tp]
    return remaining
