"""Publisher logic that needs no broker: sequence numbers (message sizing: test_batch)."""

from __future__ import annotations

from pipeline.collect.publisher import SequenceAssigner


def test_missing_seq_continues_after_the_highest_seen() -> None:
    seqs = SequenceAssigner()
    events = [
        {"tenant": "t", "sandbox_id": "a", "seq": None},
        {"tenant": "t", "sandbox_id": "a", "seq": 10},
        {"tenant": "t", "sandbox_id": "a", "seq": None},
        {"tenant": "t", "sandbox_id": "b", "seq": None},
    ]
    for event in events:
        seqs.assign(event)
    assert [e["seq"] for e in events] == [1, 10, 11, 1]


def test_two_tenants_with_the_same_sandbox_name_have_their_own_sequences() -> None:
    seqs = SequenceAssigner()
    events = [{"tenant": t, "sandbox_id": "sb-1", "seq": None} for t in "abab"]
    events.insert(2, {"tenant": "b", "sandbox_id": "sb-1", "seq": 50})  # b jumps ahead
    for event in events:
        seqs.assign(event)
    assert [(e["tenant"], e["seq"]) for e in events] == [
        ("a", 1), ("b", 1), ("b", 50), ("a", 2), ("b", 51)
    ]  # fmt: skip
