"""One destination's loop: read a batch of alerts, deliver, dead-letter, commit.

Invariants: the offsets of a batch are committed only after ``deliver`` returned (every
alert delivered, or refused and its dead letter acknowledged by Kafka) and after the
filtered and undecodable ones were counted (undecodable: dead-lettered too). While the
destination is down, ``deliver`` waits in its retry loop: the consumer does not move,
and its lag (Kafka's consumer-group lag) shows the backlog. On stop, a batch in
delivery is abandoned uncommitted and sent again by the next run (at least once).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from pipeline.config import ForwardDestination, Settings
from pipeline.forward.deliver import deliver
from pipeline.forward.destinations import build
from pipeline.forward.metrics import ForwardMetrics
from pipeline.forward.sorting import Taken, sorter_for
from pipeline.kafka_clients import client_args
from pipeline.outputs.forwarding.retry import Stopped
from pipeline.outputs.kafka.publish import publish_dead_letters
from pipeline.schema.codec import AvroCodec

log = logging.getLogger("auditpipe.forward")
PROGRESS_EVERY_S = 10.0


class _Topic:
    """The dead-letter topic as ``publish_dead_letters`` sends to it."""

    def __init__(self, producer: AIOKafkaProducer, name: str) -> None:
        self.producer, self.name = producer, name

    async def send(self, key: bytes | None, value: bytes) -> Any:
        return await self.producer.send(self.name, value=value, key=key)


class DestinationLoop:
    def __init__(
        self,
        settings: Settings,
        dest: ForwardDestination,
        codec: AvroCodec,
        metrics: ForwardMetrics,
        stopping: threading.Event,
    ) -> None:
        self.settings, self.dest, self.codec = settings, dest, codec
        self.metrics, self.stopping = metrics, stopping
        self.output = build(dest, stopping, settings.kafka)
        self.sorter = sorter_for(settings, dest, codec)
        self.group = f"{settings.forward.group}.{dest.name}"
        self.delivered = 0

    async def run(self, idle_timeout_s: float = 0.0) -> int:
        """Forward until stopped (or ``idle_timeout_s`` without a new alert); returns the
        number of alerts delivered."""
        kafka = self.settings.kafka
        consumer = AIOKafkaConsumer(
            self.sorter.topic,
            **client_args(kafka),
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        producer = AIOKafkaProducer(**client_args(kafka), acks="all", enable_idempotence=True)
        await consumer.start()
        await producer.start()
        dead_topic = _Topic(producer, kafka.topic_deadletter)
        quiet_since = time.monotonic()
        reported = time.monotonic()
        try:
            while not self.stopping.is_set():
                batches = await consumer.getmany(
                    timeout_ms=500, max_records=self.dest.batch_records
                )
                records = [r for rs in batches.values() for r in rs]
                if not records:
                    if idle_timeout_s and time.monotonic() - quiet_since > idle_timeout_s:
                        break
                    continue
                quiet_since = time.monotonic()
                if not await self._one_batch(self.sorter.sort(records), dead_topic, consumer):
                    break
                if time.monotonic() - reported > PROGRESS_EVERY_S:
                    reported = time.monotonic()
                    log.info(
                        "%s: %d %s delivered so far",
                        self.dest.name,
                        self.delivered,
                        self.dest.records,
                    )
        finally:
            await asyncio.to_thread(self.output.close)  # may block (a socket, a producer)
            await producer.stop()
            await consumer.stop()
        return self.delivered

    async def _one_batch(
        self, taken: Taken, dead_topic: _Topic, consumer: AIOKafkaConsumer
    ) -> bool:
        """Deliver, dead-letter, commit; False when stopped mid-delivery (not committed)."""
        name = self.dest.name
        started = time.monotonic()
        retries_before = self.output.retries
        try:
            refused = await asyncio.to_thread(deliver, self.output, taken.items)
        except Stopped:
            return False
        finally:
            self.metrics.retries.labels(name).inc(self.output.retries - retries_before)
        self.metrics.batch_seconds.labels(name).observe(time.monotonic() - started)
        for position, reason in refused:
            log.error("%s refused %s: %s", name, taken.items[position].uid, reason)
            taken.dead.message(
                taken.where[position],
                f"refused_by_{self.dest.type}",
                f"{name}: {reason}",
                taken.originals[position],
            )
        if taken.dead.records:
            await publish_dead_letters(dead_topic, self.codec, taken.dead.records)
        await consumer.commit(taken.ends)
        delivered = len(taken.items) - len(refused)
        self.delivered += delivered
        records = self.metrics.records
        records.labels(name, "delivered").inc(delivered)
        records.labels(name, "filtered").inc(taken.filtered)
        records.labels(name, "dead_lettered").inc(len(taken.dead.records))
        records.labels(name, "invalid").inc(taken.invalid)
        return True
