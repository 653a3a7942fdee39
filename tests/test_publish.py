"""Publisher logic that needs no broker: sequence numbers and message sizing."""

from __future__ import annotations

from pipeline.publish import SequenceAssigner, encode_batches
from pipeline.schema.codec import AvroCodec
from pipeline.schema.registry import SchemaRegistry
from pipeline.simulate import FleetSimulator


def test_missing_seq_continues_after_the_highest_seen() -> None:
    seqs = SequenceAssigner()
    events = [
        {"sandbox_id": "a", "seq": None},
        {"sandbox_id": "a", "seq": 10},
        {"sandbox_id": "a", "seq": None},
        {"sandbox_id": "b", "seq": None},
    ]
    for event in events:
        seqs.assign(event)
    assert [e["seq"] for e in events] == [1, 10, 11, 1]


def test_oversized_batches_are_split_and_lose_nothing() -> None:
    codec = AvroCodec(SchemaRegistry.load())
    events = list(FleetSimulator(1, seed=2).events(1000))
    whole = encode_batches(codec, "sb", events, max_bytes=10_000_000)
    assert [count for _, count in whole] == [1000]

    parts = encode_batches(codec, "sb", events, max_bytes=len(whole[0][0]) // 5)

    assert len(parts) > 5
    assert all(len(message) <= len(whole[0][0]) // 5 for message, _ in parts)
    decoded = [e for message, _ in parts for e in codec.decode(message).record["events"]]
    assert decoded == events
    assert sum(count for _, count in parts) == 1000
