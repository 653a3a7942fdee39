"""Decode stage: Kafka messages (Avro event batches) to events.

A message that cannot be decoded goes to the dead letters whole, with the reason; the
other messages of the batch go on.
"""

from __future__ import annotations

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


@dataclass
class DecodedPartition:
    events: list[Event]
    size_bytes: int


def decode_messages(
    codec: AvroCodec, messages: Sequence[RawMessage], ctx: BatchContext
) -> dict[int, DecodedPartition]:
    """Events per partition, each tagged with the partition and offset it came from."""
    out: dict[int, DecodedPartition] = {}
    for msg in messages:
        where = Provenance(ctx.source_topic, msg.partition, msg.offset, msg.key)
        value = msg.value or b""
        try:
            decoded = codec.decode(value)
        except DecodeError as exc:
            ctx.dead.message(where, exc.reason, exc.detail, value)
            continue
        if decoded.writer.name != BATCH_SCHEMA:
            ctx.dead.message(
                where, "wrong_schema", f"expected {BATCH_SCHEMA}, got {decoded.writer.name}", value
            )
            continue
        events = decoded.record["events"]
        for event in events:
            event["kafka_partition"] = msg.partition
            event["kafka_offset"] = msg.offset
        part = out.get(msg.partition)
        if part is None:
            part = out[msg.partition] = DecodedPartition([], 0)
        part.events.extend(events)
        part.size_bytes += len(value)
    return out
