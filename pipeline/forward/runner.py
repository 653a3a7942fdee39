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
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from pipeline.config import ForwardDestination, Settings
from pipeline.forward.deliver import deliver
from pipeline.forward.destinations import build
from pipeline.forward.metrics import ForwardMetrics
from pipeline.forward.source import as_alert, decode_alert
from pipeline.kafka_clients import client_args
from pipeline.outputs.forwarding.retry import Stopped
from pipeline.outputs.kafka.publish import publish_dead_letters
from pipeline.rules.alerts import Alert
from pipeline.rules.language import SEVERITIES
from pipeline.schema.codec import AvroCodec
from pipeline.schema.deadletter import DeadLetters, Provenance

log = logging.getLogger("auditpipe.forward")
PROGRESS_EVERY_S = 10.0


@dataclass
class Taken:
    """One batch read from the topic, sorted out."""

    alerts: list[Alert] = field(default_factory=list)
    where: list[Provenance] = field(default_factory=list)
    originals: list[bytes] = field(default_factory=list)
    filtered: int = 0
    dead: DeadLetters = field(default_factory=DeadLetters)
    ends: dict[TopicPartition, int] = field(default_factory=dict)


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
        self.minimum = SEVERITIES.index(dest.min_severity)
        self.tenants = frozenset(dest.tenants)
        self.group = f"{settings.forward.group}.{dest.name}"
        self.delivered = 0

    def sort(self, records: list[Any]) -> Taken:
        taken = Taken()
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            taken.ends[tp] = max(taken.ends.get(tp, 0), record.offset + 1)
            where = Provenance(record.topic, record.partition, record.offset, record.key)
            value = record.value or b""
            decoded = decode_alert(self.codec, value)
            try:
                alert = as_alert(decoded) if decoded is not None else None
            except ValueError as exc:
                taken.dead.message(where, "undecodable_alert", str(exc), value)
                continue
            if alert is None:
                taken.dead.message(
                    where, "undecodable_alert", "neither an Avro alert nor JSON", value
                )
            elif (self.tenants and alert.tenant not in self.tenants) or (
                SEVERITIES.index(alert.severity) < self.minimum
                if alert.severity in SEVERITIES
                else False
            ):
                taken.filtered += 1
            else:
                taken.alerts.append(alert)
                taken.where.append(where)
                taken.originals.append(value)
        return taken

    async def run(self, idle_timeout_s: float = 0.0) -> int:
        """Forward until stopped (or ``idle_timeout_s`` without a new alert); returns the
        number of alerts delivered."""
        kafka = self.settings.kafka
        consumer = AIOKafkaConsumer(
            kafka.topic_alerts,
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
                if not await self._one_batch(self.sort(records), dead_topic, consumer):
                    break
                if time.monotonic() - reported > PROGRESS_EVERY_S:
                    reported = time.monotonic()
                    log.info("%s: %d alerts delivered so far", self.dest.name, self.delivered)
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
            refused = await asyncio.to_thread(deliver, self.output, taken.alerts)
        except Stopped:
            return False
        finally:
            self.metrics.retries.labels(name).inc(self.output.retries - retries_before)
        self.metrics.batch_seconds.labels(name).observe(time.monotonic() - started)
        for position, reason in refused:
            log.error("%s refused alert %s: %s", name, taken.alerts[position].alert_id, reason)
            taken.dead.message(
                taken.where[position],
                f"refused_by_{self.dest.type}",
                f"{name}: {reason}",
                taken.originals[position],
            )
        if taken.dead.records:
            await publish_dead_letters(dead_topic, self.codec, taken.dead.records)
        await consumer.commit(taken.ends)
        delivered = len(taken.alerts) - len(refused)
        self.delivered += delivered
        records = self.metrics.records
        records.labels(name, "delivered").inc(delivered)
        records.labels(name, "filtered").inc(taken.filtered)
        records.labels(name, "dead_lettered").inc(len(taken.dead.records))
        return True
