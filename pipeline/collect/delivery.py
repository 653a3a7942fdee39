"""The collector's delivery: its committed spool groups to Kafka, in order, with an
idempotent producer (acks=all); each acknowledgement noted in the spool. After a failed
send or a crash it learns what reached Kafka without its acknowledgement
(``recovery.delivered_seqs``) and sends only the rest. A part of ``Collector``
(``collector.py``), which owns the state below."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer

from pipeline.chain.hashing import CHAIN_SEPARATOR, ChainHead, chain_key
from pipeline.collect.recovery import SEQ_HEADER, delivered_seqs
from pipeline.collect.spool import Group, Spool
from pipeline.config import Settings
from pipeline.kafka_clients import client_args

log = logging.getLogger("auditpipe.collector")

IN_FLIGHT_GROUPS = 8
MEMORY_GROUPS = 64
"""Committed groups kept in memory for delivery; beyond this they are read from disk."""


@dataclass
class CollectorStats:
    emitted: int = 0
    """Events accepted (chained and buffered)."""
    filtered: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Events below the minimum level, by (category, level): counted, not sent."""
    committed: int = 0
    """Events in durable spool groups."""
    delivered: int = 0
    """Events acknowledged by Kafka."""
    already_delivered: int = 0
    """Events found in Kafka on recovery, not sent again."""
    send_errors: int = 0
    recoveries: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "emitted": self.emitted,
            "filtered": sum(self.filtered.values()),
            "committed": self.committed,
            "delivered": self.delivered,
            "already_delivered": self.already_delivered,
            "send_errors": self.send_errors,
            "recoveries": self.recoveries,
        }


class Delivery:
    """Sends the committed groups (mixed into ``Collector``, whose ``__init__`` sets the
    state it shares with the committing side)."""

    settings: Settings
    client_id: str
    spool: Spool
    stats: CollectorStats
    _heads: dict[str, ChainHead]
    _memory: dict[int, Group]
    _next_send: int
    _unsure: bool
    _kafka_takes: bool
    _in_kafka: dict[str, int]
    _committed: asyncio.Condition
    _committed_group: int
    _delivered_group: int
    _delivered: asyncio.Condition
    _producer: AIOKafkaProducer | None

    # -- delivering -----------------------------------------------------------------

    async def _deliver_loop(self) -> None:
        """Send committed groups in order, a window at a time; on any failure start over
        from the first unacknowledged group, skipping what Kafka already has."""
        in_flight: list[tuple[Group, list[asyncio.Future[Any]]]] = []
        while True:
            try:
                producer = await self._ready_producer()
                while (
                    len(in_flight) < IN_FLIGHT_GROUPS and self._next_send <= self._committed_group
                ):
                    group = self._group(self._next_send)
                    self._next_send += 1
                    in_flight.append((group, await self._send_group(producer, group)))
                if not in_flight:
                    await self._wait_for_commit()
                    continue
                group, futures = in_flight[0]
                await asyncio.gather(*futures)
                in_flight.pop(0)
                await self._mark_delivered(group)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.stats.send_errors += 1
                self._kafka_takes = False
                log.warning(
                    "delivery failed (%s: %s); the spool keeps the events, retrying",
                    type(exc).__name__,
                    exc,
                )
                for _, futures in in_flight:
                    for future in futures:
                        future.cancel()
                in_flight = []
                self._next_send = self._delivered_group + 1
                self._unsure = True
                await self._drop_producer()
                await asyncio.sleep(random.uniform(0.5, 1.5))

    async def _ready_producer(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        compression = self.settings.publish.compression
        producer = AIOKafkaProducer(
            **client_args(self.settings.kafka),
            client_id=self.client_id,
            acks="all",
            enable_idempotence=True,
            compression_type=None if compression == "none" else compression,
            linger_ms=5,
            max_batch_size=1024 * 1024,
            max_request_size=self.settings.publish.max_message_bytes + 64 * 1024,
            request_timeout_ms=10_000,
        )
        try:
            await producer.start()
            if self._unsure and self._next_send <= self._committed_group:
                await self._find_delivered()
            self._unsure = False
        except BaseException:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise
        self._producer = producer
        return producer

    async def _find_delivered(self) -> None:
        """Learn the highest seq per chain that Kafka holds since the first unsent group."""
        self.stats.recoveries += 1
        first = self._group(self._next_send)
        since_ms = int(first.state.get("committed_at", 0) * 1000) - 60_000
        found = await delivered_seqs(self.settings, set(self._heads), since_ms)
        for chain, seq in found.items():
            self._in_kafka[chain] = max(self._in_kafka.get(chain, 0), seq)

    def _group(self, number: int) -> Group:
        group = self._memory.get(number)
        if group is None:  # spilled to disk only: load it and the next ones
            for loaded in self.spool.read_groups(after=number - 1):
                if len(self._memory) >= MEMORY_GROUPS and loaded.number != number:
                    break
                self._memory[loaded.number] = loaded
            group = self._memory[number]
        return group

    async def _send_group(
        self, producer: AIOKafkaProducer, group: Group
    ) -> list[asyncio.Future[Any]]:
        futures = []
        for message in group.messages:
            chain = _with_tenant(message.chain, self.settings.collect.tenant)
            if message.last_seq <= self._in_kafka.get(chain, 0):
                self.stats.already_delivered += message.events
                continue
            header = f"{message.first_seq}-{message.last_seq}".encode()
            futures.append(
                await producer.send(
                    self.settings.kafka.topic_events,
                    message.payload,
                    key=chain.encode(),
                    headers=[(SEQ_HEADER, header)],
                )
            )
        return futures

    async def _mark_delivered(self, group: Group) -> None:
        self.spool.acknowledge(group.number)
        self._memory.pop(group.number, None)
        self.stats.delivered += sum(m.events for m in group.messages)
        self._kafka_takes = True
        async with self._delivered:
            self._delivered_group = group.number
            self._delivered.notify_all()

    async def _wait_for_commit(self) -> None:
        async with self._committed:
            await self._committed.wait_for(lambda: self._next_send <= self._committed_group)

    async def _drop_producer(self) -> None:
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._producer.stop(), 5)
            self._producer = None


def _with_tenant(key: str, tenant: str) -> str:
    """A chain key; a key persisted before keys named the tenant is the configured
    tenant's sandbox."""
    return key if CHAIN_SEPARATOR in key else chain_key(tenant, key)
