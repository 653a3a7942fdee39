"""Decode stage: Kafka messages (Avro event batches) to events.

A message that cannot be decoded goes to the dead letters whole, with the reason; the
other messages of the batch go on. Limits bound what one message may cost before it is
decoded: its size (``message_too_large``: the dead letter keeps its first 64 KiB, its
size and SHA-256, not the whole) and its number of events (``too_many_events``); a Kafka
record batch over ``worker.max_batch_bytes`` decompressed never becomes messages at all
(``batch_too_large``, one dead letter per offset, see ``worker/decompression.py``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.schema.batch import BATCH_SCHEMA
from pipeline.schema.codec import AvroCodec, DecodeError
from pipeline.schema.deadletter import Provenance
from pipeline.schema.event import Event
from pipeline.stages.base import BatchContext


@dataclass(frozen=True)
class RawMessage:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int = 0
    """The Kafka timestamp (0: unknown; the fairness stage then takes its own clock)."""


@dataclass(frozen=True)
class DecodeLimits:
    max_message_bytes: int = 16 * 1024 * 1024
    max_events: int = 50_000


KEPT_OF_A_LARGE_MESSAGE = 64 * 1024
UNREADABLE_BATCH = b"\x00auditpipe:unreadable-batch:"
"""The value the worker's consumer gives each offset of a Kafka record batch it did not
decompress (``worker/decompression.py``), followed by the reason: a dead letter
(``batch_too_large``) without content."""


@dataclass
class DecodedPartition:
    events: list[Event]
    size_bytes: int


def decode_messages(
    codec: AvroCodec,
    messages: Sequence[RawMessage],
    ctx: BatchContext,
    limits: DecodeLimits = DecodeLimits(),
) -> dict[int, DecodedPartition]:
    """Events per partition, each tagged with the partition and offset it came from."""
    out: dict[int, DecodedPartition] = {}
    for msg in messages:
        where = Provenance(ctx.source_topic, msg.partition, msg.offset, msg.key)
        value = msg.value or b""
        if value.startswith(UNREADABLE_BATCH):
            detail = value[len(UNREADABLE_BATCH) :].decode(errors="replace")
            ctx.dead.message(where, "batch_too_large", detail, b"")
            continue
        if len(value) > limits.max_message_bytes:
            detail = (
                f"{len(value)} bytes, over worker.max_message_bytes {limits.max_message_bytes}; "
                f"sha256 {hashlib.sha256(value).hexdigest()}, first {KEPT_OF_A_LARGE_MESSAGE} "
                "bytes kept"
            )
            ctx.dead.message(where, "message_too_large", detail, value[:KEPT_OF_A_LARGE_MESSAGE])
            continue
        try:
            decoded = codec.decode(value, limits.max_events)
        except DecodeError as exc:
            ctx.dead.message(where, exc.reason, exc.detail, value)
            continue
        if decoded.writer.name != BATCH_SCHEMA:
            ctx.dead.message(
                where, "wrong_schema", f"expected {BATCH_SCHEMA}, got {decoded.writer.name}", value
            )
            continue
        events = decoded.record["events"]
        ctx.arrivals[(msg.partition, msg.offset)] = (msg.key, msg.timestamp_ms)
        for event in events:
            event["kafka_partition"] = msg.partition
            event["kafka_offset"] = msg.offset
        part = out.get(msg.partition)
        if part is None:
            part = out[msg.partition] = DecodedPartition([], 0)
        part.events.extend(events)
        part.size_bytes += len(value)
    return out
