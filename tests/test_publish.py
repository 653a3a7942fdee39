"""Publisher logic that needs no broker: sequence numbers (message sizing: test_batch)."""

from __future__ import annotations

from pipeline.publish import SequenceAssigner


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
