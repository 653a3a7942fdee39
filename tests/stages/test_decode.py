"""The decode stage: messages to events, undecodable messages to dead letters."""

from __future__ import annotations

from pipeline.schema.codec import AvroCodec
from pipeline.schema.registry import SchemaRegistry
from pipeline.sim.simulate import FleetSimulator
from pipeline.stages.base import BatchContext
from pipeline.stages.decode import RawMessage, decode_messages

CODEC = AvroCodec(SchemaRegistry.load())


def message(partition: int, offset: int, n: int) -> RawMessage:
    events = list(FleetSimulator(1, seed=offset).events(n))
    value = CODEC.encode(
        "audit_event_batch", {"sandbox_id": "sb", "collector": "t", "sent_at": 0, "events": events}
    )
    return RawMessage(partition, offset, b"sb", value)


def test_events_are_grouped_by_partition_and_tagged_with_offsets() -> None:
    ctx = BatchContext("audit.events")
    out = decode_messages(CODEC, [message(0, 5, 3), message(1, 9, 2), message(0, 6, 1)], ctx)
    assert sorted(out) == [0, 1]
    assert [(e["kafka_partition"], e["kafka_offset"]) for e in out[0].events] == [
        (0, 5),
        (0, 5),
        (0, 5),
        (0, 6),
    ]
    assert len(out[1].events) == 2
    assert not ctx.dead


def test_a_bad_message_is_dead_lettered_alone() -> None:
    ctx = BatchContext("audit.events")
    dlq_value = CODEC.encode(
        "dead_letter",
        {
            "reason": "x",
            "detail": "",
            "source_topic": "t",
            "source_partition": 0,
            "source_offset": 0,
            "key": None,
            "original": b"",
            "event_id": None,
            "failed_at": 0,
        },
    )
    bad = [RawMessage(2, 7, b"k", b"garbage"), RawMessage(2, 8, None, dlq_value)]

    out = decode_messages(CODEC, [message(2, 6, 4), *bad, message(2, 9, 1)], ctx)

    assert len(out[2].events) == 5
    assert [(r["reason"], r["source_offset"], r["key"]) for r in ctx.dead.records] == [
        ("not_avro", 7, b"k"),
        ("wrong_schema", 8, None),
    ]
    assert ctx.dead.records[0]["original"] == b"garbage"
    assert ctx.dead.by_reason == {"not_avro": 1, "wrong_schema": 1}
