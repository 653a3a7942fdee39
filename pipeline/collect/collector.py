"""The collector SDK: chain, batch, spool and deliver a sandbox's events to Kafka.

``emit`` masks the event's secrets (the ``redact`` rules, ``pipeline/redaction.py``),
gives it its sandbox's next ``seq`` and chain hash and buffers it: the chain covers the
event as it will be stored, so ``auditpipe verify`` checks every stored row's content.
A *commit* (a batch is full, the linger time passed, or ``flush``) turns every buffer
into messages and writes them to the spool with one fsync, together with the chain heads
and the sources' positions; only then are they sent. A background task delivers the
spooled groups in order with Kafka's idempotent producer (acks=all) and notes each
acknowledgement in the spool. So:

* a crash loses nothing committed; a source resumes from the position of the last
  commit and re-reads what came after, getting the same ``seq`` numbers again;
* when Kafka is down the spool grows on disk (memory stays bounded) and is delivered,
  in order, once Kafka is back;
* after a crash or an outage, messages that reached Kafka but whose acknowledgement was
  lost are found in the topic (each message carries its sandbox's seq range in a header)
  and not sent twice.

Usage (asyncio; ``SyncCollector`` wraps it for plain code)::

    async with Collector(settings, spool_dir=Path("/var/lib/auditpipe/spool")) as c:
        await c.emit(normalize_event({"tenant": "acme", "sandbox_id": "sb-1",
                                      "category": "process", "action": "exec"}, now_ms=...))
        await c.flush()  # optional: wait until Kafka acknowledged everything
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from pipeline.chain.hashing import CHAIN_SEPARATOR, ChainHead, chain_key
from pipeline.collect.delivery import MEMORY_GROUPS, CollectorStats, Delivery, _with_tenant
from pipeline.collect.recovery import filtered_counts_event
from pipeline.collect.spool import Group, Spool, SpooledMessage
from pipeline.config import Settings
from pipeline.redaction import Redactor, redaction_key
from pipeline.schema import codec_for
from pipeline.schema.batch import EventBatchEncoder
from pipeline.schema.event import LEVELS, Event

log = logging.getLogger("auditpipe.collector")

COLLECTOR_NAME = "auditpipe-collector/0.1"
"""The batches' `collector` field: who sent them."""


class Collector(Delivery):
    """Publishes events durably and in order; use as an async context manager."""

    def __init__(
        self,
        settings: Settings,
        *,
        spool_dir: Path,
        client_id: str = "collector",
        min_level: str | None = None,
    ) -> None:
        self.settings = settings
        self.codec = codec_for(settings.kafka.schema_registry_url)
        self.spool = Spool(spool_dir, fsync=settings.collect.fsync)
        self.client_id = client_id
        self.min_level = LEVELS.index(min_level) if min_level else 0
        self.stats = CollectorStats()
        self.sources: dict[str, Any] = {}
        """The position each source reached, as of the last commit (after start: resume)."""
        self._redactor = (
            Redactor(settings.redact, redaction_key(settings.redact, settings.home))
            if settings.redact.enabled
            else None
        )
        """Masks secrets before an event is sealed: the chain covers what is stored."""
        self._heads: dict[str, ChainHead] = {}
        """Per chain (``chain_key(tenant, sandbox_id)``), its head: two tenants' sandboxes
        of the same name are two chains."""
        self._batches = EventBatchEncoder(self.codec, collector=COLLECTOR_NAME)
        self._encode_event = self._batches.encode
        self._batch_events = settings.publish.batch_events
        self._buffers: dict[str, list[bytes]] = {}
        """Per chain, its events sealed and encoded since the last commit."""
        self._buffer_started = 0.0
        self._next_group = 1
        self._memory: dict[int, Group] = {}
        """Committed, unacknowledged groups held in memory (at most MEMORY_GROUPS)."""
        self._next_send = 1
        self._unsure = False
        """True when groups may have reached Kafka without their acknowledgement."""
        self._kafka_takes = True
        """False from a failed or stalled delivery to the next acknowledgement: commits
        then spool without waiting for Kafka (see `_wait_for_memory_room`)."""
        self._in_kafka: dict[str, int] = {}
        """Highest seq per chain found in Kafka on recovery: not sent again."""
        self._committed = asyncio.Condition()
        self._committed_group = 0
        self._delivered_group = 0
        self._delivered = asyncio.Condition()
        self._closing = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._producer: AIOKafkaProducer | None = None
        self._commit_lock = asyncio.Lock()
        self._filtered: dict[tuple[str, str], Counter[tuple[str, str]]] = {}
        """Events below min_level since the last counts event, per (tenant, sandbox)."""
        self._counts_since = time.time()

    # -- life cycle -----------------------------------------------------------------

    async def __aenter__(self) -> Collector:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        recovered = self.spool.recover()
        state = recovered.state
        tenant = self.settings.collect.tenant
        self._heads = {
            _with_tenant(key, tenant): ChainHead(seq, bytes.fromhex(h))
            for key, (seq, h) in state.get("heads", {}).items()
        }
        self.sources = dict(state.get("sources", {}))
        self._next_group = recovered.next_group
        self._committed_group = recovered.next_group - 1
        self._delivered_group = self.spool.acked
        if recovered.discarded_bytes:
            log.warning(
                "spool: dropped a torn group of %d bytes (never sent; its source "
                "lines are read again)",
                recovered.discarded_bytes,
            )
        self._next_send = self._delivered_group + 1
        self._unsure = bool(recovered.unacked)
        for group in recovered.unacked[:MEMORY_GROUPS]:
            self._memory[group.number] = group
        self._tasks = [
            asyncio.create_task(self._deliver_loop(), name="deliver"),
            asyncio.create_task(self._linger_loop(), name="linger"),
            asyncio.create_task(self._counts_loop(), name="counts"),
        ]

    async def close(self, *, delivery_timeout_s: float | None = None) -> None:
        """Commit what is buffered and wait (up to the timeout, default
        ``collect.exit_delivery_timeout_s``) for its delivery.

        What is not delivered by then stays in the spool for the next start.
        """
        await self.publish_filtered_counts()
        await self.commit()
        if delivery_timeout_s is None:
            delivery_timeout_s = self.settings.collect.exit_delivery_timeout_s
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wait_delivered(), delivery_timeout_s)
        self._closing.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._producer is not None:
            await self._producer.stop()
        self.spool.close()

    # -- emitting -------------------------------------------------------------------

    async def emit(self, event: Event, *, source: str | None = None, position: Any = None) -> None:
        """Chain, encode and buffer one valid event; ``source``/``position`` is where the
        source will resume after it. An event the schema cannot hold raises ValueError and
        changes nothing. May wait while the spool is over its size limit, or while Kafka
        is slower than the caller (backpressure)."""
        if source is not None:
            self.sources[source] = position
        if self.min_level and LEVELS.index(event["level"]) < self.min_level:
            key = (event["category"], event["level"])
            self.stats.filtered[key] += 1
            self._filtered.setdefault((event["tenant"], event["sandbox_id"]), Counter())[key] += 1
            return
        if self._buffer(event):  # the caller waits only when a batch is full
            await self.commit()

    async def _accept(self, event: Event) -> None:
        if self._buffer(event):
            await self.commit()

    def _buffer(self, event: Event) -> bool:
        """Seal, encode and buffer the event; True when its chain's batch is full."""
        if self._redactor is not None:
            self._redactor.mask(event)
        chain = chain_key(event["tenant"], event["sandbox_id"])
        head = self._heads.get(chain)
        if head is None:
            head = self._heads[chain] = ChainHead()
        encoded = head.seal_encoded(event, self._encode_event)
        buffer = self._buffers.get(chain)
        if buffer is None:
            if not self._buffers:
                self._buffer_started = time.monotonic()
            buffer = self._buffers[chain] = []
        buffer.append(encoded)
        self.stats.emitted += 1
        return len(buffer) >= self._batch_events

    def advance(self, source: str, position: Any) -> None:
        """A source moved past input that produced no event (a bad line, a comment)."""
        self.sources[source] = position

    async def emit_many(self, events: Iterable[Event]) -> None:
        for event in events:
            await self.emit(event)

    async def commit(self) -> None:
        """Make everything emitted so far durable (one spool write) and queue it."""
        async with self._commit_lock:
            await self._wait_for_spool_room()
            buffers, self._buffers = self._buffers, {}
            spooled = self._encode(buffers)
            state = {
                "heads": {sb: [h.seq, h.hash.hex()] for sb, h in self._heads.items()},
                "sources": dict(self.sources),
                "committed_at": time.time(),
            }
            number = self._next_group
            self._next_group += 1
            make_durable = self.spool.write_group(number, spooled, state)
            # The fsync waits for the disk, not the CPU: delivery goes on meanwhile.
            await asyncio.to_thread(make_durable)
            self._committed_group = number
            self.stats.committed += sum(m.events for m in spooled)
            if len(self._memory) < MEMORY_GROUPS:
                self._memory[number] = Group(number, spooled, state)
        async with self._committed:
            self._committed.notify_all()
        await self._wait_for_memory_room()

    def _encode(self, buffers: dict[str, list[bytes]]) -> list[SpooledMessage]:
        max_bytes = self.settings.publish.max_message_bytes
        sent_at = time.time_ns() // 1_000_000
        spooled = []
        for chain, encoded in buffers.items():
            # A buffer holds the events sealed since the last commit: consecutive seqs
            # that end at the head.
            first = self._heads[chain].seq - len(encoded) + 1
            sandbox = chain.partition(CHAIN_SEPARATOR)[2]
            for payload, count in self._batches.messages(
                sandbox, encoded, max_bytes=max_bytes, sent_at=sent_at
            ):
                spooled.append(SpooledMessage(chain, first, first + count - 1, count, payload))
                first += count
        return spooled

    async def flush(self) -> None:
        """Commit and wait until Kafka acknowledged everything emitted so far."""
        await self.commit()
        await self.wait_delivered()

    @property
    def undelivered_groups(self) -> int:
        """Committed groups of events Kafka has not acknowledged yet (they stay in the
        spool, delivered at the next start)."""
        return max(0, self._committed_group - self._delivered_group)

    async def wait_delivered(self) -> None:
        target = self._committed_group
        async with self._delivered:
            await self._delivered.wait_for(lambda: self._delivered_group >= target)

    async def _wait_for_memory_room(self) -> None:
        """Backpressure while Kafka takes the events: when MEMORY_GROUPS groups wait for
        delivery, wait until one is delivered (else they would spill to the spool file,
        to be read back). While Kafka is down or stalls (no delivery for a second), do not
        wait: the spool grows on disk instead."""
        while len(self._memory) >= MEMORY_GROUPS and self._kafka_takes:
            try:
                await asyncio.wait_for(self._next_delivery(), 1.0)
            except TimeoutError:
                self._kafka_takes = False  # until the next delivery

    async def _wait_for_spool_room(self) -> None:
        limit = self.settings.collect.max_spool_bytes
        while self.spool.bytes_on_disk > limit:
            await self._next_delivery()

    async def _next_delivery(self) -> None:
        """Wait until Kafka acknowledged one more group."""
        async with self._delivered:
            before = self._delivered_group
            await self._delivered.wait_for(lambda: self._delivered_group > before)

    async def publish_filtered_counts(self) -> None:
        """One ``lifecycle/filtered_counts`` event per sandbox that had events filtered:
        what the level filter kept back is counted, never silently dropped."""
        filtered, self._filtered = self._filtered, {}
        since, self._counts_since = self._counts_since, time.time()
        for (tenant, sandbox), counts in filtered.items():
            attributes = {f"{category}.{level}": str(n) for (category, level), n in counts.items()}
            attributes.update(
                min_level=LEVELS[self.min_level],
                since=f"{since:.3f}",
                total=str(sum(counts.values())),
            )
            await self._accept(filtered_counts_event(tenant, sandbox, attributes))

    async def _counts_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.collect.counts_interval_s)
            await self.publish_filtered_counts()

    async def _linger_loop(self) -> None:
        linger_s = self.settings.publish.linger_ms / 1000
        while True:
            await asyncio.sleep(max(linger_s / 2, 0.005))
            if self._buffers and time.monotonic() - self._buffer_started >= linger_s:
                await self.commit()
