"""Publishing audit events to Kafka: one message carries a batch from one sandbox.

``EventPublisher`` collects events per sandbox, encodes each full batch as one
self-describing Avro message (key = ``chain_key(tenant, sandbox_id)``, like the
collector's: a tenant's sandbox always lands on one partition, whoever sends it) and
sends it with Kafka's idempotent producer (acks=all). ``publish_json_lines`` is the
``auditpipe publish`` front end.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from pipeline.chain.hashing import CHAIN_SEPARATOR, chain_key
from pipeline.config import Settings
from pipeline.kafka_clients import client_args
from pipeline.redaction import Redactor, redaction_key
from pipeline.schema.batch import EventBatchEncoder
from pipeline.schema.codec import AvroCodec
from pipeline.schema.event import Event, InvalidEvent, parse_event_line

COLLECTOR_NAME = "auditpipe-publish/0.1"
# Sends awaiting their acknowledgement before `add` waits for the oldest (backpressure).
MAX_IN_FLIGHT = 64


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class PublishStats:
    events: int = 0
    """Events acknowledged by the broker."""
    messages: int = 0
    rejected: int = 0
    """Input records that were not valid events (reported, not sent)."""
    bytes: int = 0
    started: float = field(default_factory=time.monotonic)

    def rate(self) -> float:
        return self.events / max(time.monotonic() - self.started, 1e-9)


class SequenceAssigner:
    """Gives events without a ``seq`` the next number of their sandbox (a sandbox is named
    by tenant and id: two tenants' sandboxes of one name have sequences of their own).

    >>> assigner = SequenceAssigner()
    >>> events = [{"tenant": t, "sandbox_id": "sb-1", "seq": None} for t in ("a", "b", "a")]
    >>> for event in events:
    ...     assigner.assign(event)
    >>> [e["seq"] for e in events]
    [1, 1, 2]
    """

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], int] = {}

    def assign(self, event: Event) -> None:
        sandbox = (event["tenant"], event["sandbox_id"])
        seq = event["seq"]
        if seq is None:
            event["seq"] = seq = self._last.get(sandbox, 0) + 1
        if seq > self._last.get(sandbox, 0):
            self._last[sandbox] = seq


class EventPublisher:
    """Batches events per sandbox and publishes each batch as one Kafka message.

    Use as an async context manager; ``add`` may wait when too many sends are in flight.
    """

    def __init__(self, settings: Settings, codec: AvroCodec, *, client_id: str = "publish"):
        self.settings = settings
        self.codec = codec
        self.topic = settings.kafka.topic_events
        self.batch_events = settings.publish.batch_events
        self.stats = PublishStats()
        self._batches = EventBatchEncoder(codec, collector=COLLECTOR_NAME)
        self._redactor = (
            Redactor(settings.redact, redaction_key(settings.redact, settings.home))
            if settings.redact.enabled
            else None
        )
        """Masks the secrets of events without a chain before they reach Kafka."""
        self._buffers: dict[str, list[bytes]] = {}
        """Per chain (tenant and sandbox), its events not sent yet, each encoded when it
        was added."""
        self._buffer_started: dict[str, float] = {}
        self._in_flight: list[asyncio.Future[Any]] = []
        self._linger_task: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        # One sender at a time, from taking a buffer to handing it to the producer: a
        # sandbox's batches reach Kafka in the order they were filled.
        self._send_lock = asyncio.Lock()
        compression = settings.publish.compression
        self._producer = AIOKafkaProducer(
            **client_args(settings.kafka),
            client_id=client_id,
            acks="all",
            enable_idempotence=True,
            compression_type=None if compression == "none" else compression,
            linger_ms=5,
            max_batch_size=1024 * 1024,
            max_request_size=settings.publish.max_message_bytes + 64 * 1024,
            request_timeout_ms=30_000,
        )

    async def __aenter__(self) -> EventPublisher:
        await self._producer.start()
        self._linger_task = asyncio.create_task(self._linger_loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        # The linger task is asked to stop, never cancelled: a cancel while it holds a
        # taken buffer would lose that buffer's events.
        self._closing.set()
        try:
            if self._linger_task is not None:
                await self._linger_task
            await self.flush()
        finally:
            await self._producer.stop()

    async def add(self, event: Event) -> None:
        """Encode and buffer one event; a ValueError names what the schema cannot hold."""
        if self.buffer(event):
            await self.send(chain_key(event["tenant"], event["sandbox_id"]))

    def buffer(self, event: Event) -> bool:
        """Encode and buffer one event; True when its chain's batch is full: then `send`
        its chain_key (what `add` does; this half is for loops that await only then)."""
        if self._redactor is not None and event["hash"] is None:
            self._redactor.mask(event)  # a chained event is the chain's (the worker checks)
        encoded = self._batches.encode(event)
        chain = chain_key(event["tenant"], event["sandbox_id"])
        buffer = self._buffers.get(chain)
        if buffer is None:
            buffer = self._buffers[chain] = []
            self._buffer_started[chain] = time.monotonic()
        buffer.append(encoded)
        return len(buffer) >= self.batch_events

    async def add_many(self, events: Iterable[Event]) -> None:
        for event in events:
            await self.add(event)

    async def flush(self) -> None:
        """Send every partly filled batch and wait until the broker acknowledged all."""
        for chain in list(self._buffers):
            await self.send(chain)
        await self._drain(0)

    async def send(self, chain: str) -> None:
        """Send the chain's buffered events (one message, or more if over the size limit)."""
        async with self._send_lock:
            encoded = self._buffers.pop(chain, None)
            self._buffer_started.pop(chain, None)
            if encoded:
                for message, count in self._batches.messages(
                    chain.partition(CHAIN_SEPARATOR)[2],
                    encoded,
                    max_bytes=self.settings.publish.max_message_bytes,
                    sent_at=now_ms(),
                ):
                    await self._send(chain, message, count)

    async def _send(self, chain: str, message: bytes, events: int) -> None:
        await self._drain(MAX_IN_FLIGHT - 1)
        future = await self._producer.send(self.topic, message, key=chain.encode())
        future.add_done_callback(functools.partial(self._acked, events, len(message)))
        self._in_flight.append(future)

    def _acked(self, events: int, size: int, future: asyncio.Future[Any]) -> None:
        if future.cancelled() or future.exception() is not None:
            return  # raised to the caller by _drain
        self.stats.events += events
        self.stats.messages += 1
        self.stats.bytes += size

    async def _drain(self, keep: int) -> None:
        while len(self._in_flight) > keep:
            future = self._in_flight.pop(0)
            await future  # a failed send raises here: nothing is dropped silently

    async def _linger_loop(self) -> None:
        linger_s = self.settings.publish.linger_ms / 1000
        while not self._closing.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), timeout=max(linger_s, 0.005))
            deadline = time.monotonic() - linger_s
            for chain, started in list(self._buffer_started.items()):
                if started <= deadline:
                    await self.send(chain)


@dataclass
class LineError:
    line: int
    message: str


async def publish_json_lines(
    settings: Settings,
    codec: AvroCodec,
    lines: Iterable[bytes],
    on_error: Callable[[LineError], None],
) -> PublishStats:
    """Publish JSON-lines events; a bad line is reported through on_error and skipped."""
    sequences = SequenceAssigner()
    async with EventPublisher(settings, codec) as publisher:
        now = now_ms()
        for number, line in enumerate(lines, start=1):
            if not number & 0xFF:  # the time a missing ts is filled with, every 256 lines
                now = now_ms()
            if not line or line.isspace():
                continue
            try:
                event = parse_event_line(line, now_ms=now)
            except orjson.JSONDecodeError as exc:
                publisher.stats.rejected += 1
                on_error(LineError(number, f"invalid JSON: {exc}"))
                continue
            except InvalidEvent as exc:
                publisher.stats.rejected += 1
                on_error(LineError(number, str(exc)))
                continue
            sequences.assign(event)
            try:
                full = publisher.buffer(event)
            except ValueError as exc:  # checked above; a last guard, never a crash
                publisher.stats.rejected += 1
                on_error(LineError(number, str(exc)))
                continue
            if full:  # the loop awaits only when a batch is full
                await publisher.send(chain_key(event["tenant"], event["sandbox_id"]))
    return publisher.stats


def read_lines(path: str) -> Iterable[bytes]:
    """Lines of a file, or of stdin for ``-``."""
    if path == "-":
        yield from sys.stdin.buffer
        return
    with open(path, "rb") as handle:
        yield from handle
