"""The collapse stage: identical repeats stored once with a repeat_count."""

from __future__ import annotations

from typing import Any

from pipeline.chain.hashing import GENESIS
from pipeline.config import CollapseConfig
from pipeline.stages.base import BatchContext
from pipeline.stages.collapse import CollapseStage


def poll(ts: int, seq: int, **changes: Any) -> dict[str, Any]:
    event = {
        "tenant": "acme",
        "sandbox_id": "sb-1",
        "category": "api",
        "action": "call",
        "object": "GET /status",
        "outcome": "success",
        "ts": ts,
        "seq": seq,
        "hash": bytes([seq]) * 32,
        "prev_hash": bytes([seq - 1]) * 32 if seq > 1 else None,
        "actor": {"user": "ci", "uid": 1, "pid": 7, "ppid": 1, "process": "agent", "cmdline": "a"},
    }
    return event | changes


def stage(**windows: float) -> CollapseStage:
    return CollapseStage(CollapseConfig(windows=windows or {"api": 10}))  # type: ignore[arg-type]


def test_repeats_within_the_window_become_one_event_with_their_chain_links() -> None:
    ctx = BatchContext()
    kept = stage().process([poll(1_000, 1), poll(2_000, 2), poll(9_000, 3)], ctx)
    assert len(kept) == 1 and ctx.counted("events_collapsed") == 2
    (first,) = kept
    assert first["seq"] == 1 and first["repeat_count"] == 3
    assert first["repeat_seqs"] == [2, 3]
    assert first["repeat_hashes"] == [bytes([2]) * 32, bytes([3]) * 32]
    assert first["repeat_prev_hashes"] == [bytes([1]) * 32, bytes([2]) * 32]


def test_a_repeat_after_the_window_starts_a_new_run() -> None:
    kept = stage().process([poll(1_000, 1), poll(11_001, 2), poll(12_000, 3)], BatchContext())
    assert [(e["seq"], e.get("repeat_count", 1)) for e in kept] == [(1, 1), (2, 2)]


def test_any_difference_in_identity_keeps_both() -> None:
    base = poll(1_000, 1)
    others = [
        poll(1_001, 2, object="GET /other"),
        poll(1_002, 3, outcome="failure"),
        poll(1_003, 4, sandbox_id="sb-2"),
        poll(1_004, 5, actor=base["actor"] | {"pid": 8}),
        poll(1_005, 6, action="stream"),
    ]
    ctx = BatchContext()
    assert len(stage().process([base, *others], ctx)) == 6 and not ctx.counts


def test_matched_events_and_unlisted_categories_are_never_collapsed() -> None:
    matched = [poll(1_000, 1), poll(1_001, 2, matched_rules=["R-1"])]
    files = [poll(1_000, 3, category="file"), poll(1_001, 4, category="file")]
    ctx = BatchContext()
    assert len(stage().process(matched + files, ctx)) == 4 and not ctx.counts
    assert len(stage(file=5).process(files, BatchContext())) == 1


def test_unchained_repeats_are_counted_without_links_and_genesis_stands_for_none() -> None:
    unchained = [poll(1_000, 1, hash=None), poll(1_001, 2, hash=None, prev_hash=None)]
    (first,) = stage().process(unchained, BatchContext())
    assert first["repeat_count"] == 2 and "repeat_seqs" not in first
    # seq 1: no prev_hash
    (head,) = stage().process([poll(1_000, 5), poll(1_001, 1)], BatchContext())
    assert head["repeat_prev_hashes"] == [GENESIS]
