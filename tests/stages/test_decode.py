"""The decode stage: messages to events, undecodable messages to dead letters."""

from __future__ import annotations

import hashlib
from dataclasses import replace

from pipeline.schema.codec import AvroCodec
from pipeline.schema.registry import SchemaRegistry
from pipeline.sim.simulate import FleetSimulator
from pipeline.stages.base import BatchContext
from pipeline.stages.decode import UNREADABLE_BATCH, DecodeLimits, RawMessage, decode_messages

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


TINY = {
    "event_id": "", "ts": 0, "tenant": "", "sandbox_id": "", "category": "file", "action": "",
    "level": "info", "outcome": "success", "object": "", "bytes": None, "attributes": {},
    "actor": {"user": "", "uid": 0, "pid": 0, "ppid": 0, "process": "", "cmdline": ""},
    "seq": 0, "prev_hash": None, "hash": None,
}  # fmt: skip


def tiny_flood(n: int, codec: AvroCodec = CODEC) -> bytes:
    """One message of n near-empty events: about 22 bytes each, over 1 KB as objects."""
    record = {"sandbox_id": "sb", "collector": "t", "sent_at": 0, "events": [TINY] * n}
    return codec.encode("audit_event_batch", record)


def test_limits_bound_what_one_message_may_cost() -> None:
    """Too many events: refused before they are built; too large: the dead letter keeps
    the first 64 KiB, the size and the digest. The messages around them go on."""
    flood = tiny_flood(5_000)
    assert len(flood) < 5_000 * 27
    huge = RawMessage(0, 3, b"sb", b"\xc3\x01" + bytes(300_000))
    ctx = BatchContext("audit.events")
    limits = DecodeLimits(max_message_bytes=200_000, max_events=1_000)

    out = decode_messages(
        CODEC,
        [message(0, 1, 2), RawMessage(0, 2, b"sb", flood), huge, message(0, 4, 1)],
        ctx,
        limits,
    )

    assert [e["kafka_offset"] for e in out[0].events] == [1, 1, 4]
    reasons = [(r["reason"], r["source_offset"]) for r in ctx.dead.records]
    assert reasons == [("too_many_events", 2), ("message_too_large", 3)]
    assert ctx.dead.records[0]["original"] == flood  # small enough to keep whole
    kept = ctx.dead.records[1]
    assert len(kept["original"]) == 64 * 1024 and "300002 bytes" in kept["detail"]
    assert hashlib.sha256(huge.value).hexdigest() in kept["detail"]


def test_a_batch_the_consumer_did_not_decompress_is_a_dead_letter_per_offset() -> None:
    """worker/decompression.py marks each offset of a batch over the cap."""
    ctx = BatchContext("audit.events")
    marked = UNREADABLE_BATCH + b"zstd batch over 67108864 bytes decompressed"
    out = decode_messages(CODEC, [RawMessage(0, 7, None, marked), message(0, 8, 1)], ctx)

    assert [e["kafka_offset"] for e in out[0].events] == [8]
    (dead,) = ctx.dead.records
    assert (dead["reason"], dead["source_offset"], dead["original"]) == ("batch_too_large", 7, b"")
    assert "zstd batch over" in dead["detail"]


def test_the_event_limit_holds_without_the_c_decoder_too() -> None:
    registry = SchemaRegistry.load()
    latest = registry.latest("audit_event_batch")
    plain = AvroCodec(registry.with_version(replace(latest, decode_body=None)))
    ctx = BatchContext("audit.events")
    limits = DecodeLimits(max_events=10)
    out = decode_messages(plain, [RawMessage(0, 1, None, tiny_flood(11, plain))], ctx, limits)
    assert not out and ctx.dead.records[0]["reason"] == "too_many_events"
    out = decode_messages(plain, [RawMessage(0, 2, None, tiny_flood(10, plain))], ctx, limits)
    assert len(out[0].events) == 10
