"""The collapse stage: identical repeats stored once with a repeat_count."""

from __future__ import annotations

from typing import Any

from pipeline.collect.chain import GENESIS
from pipeline.config import CollapseConfig
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
    s = stage()
    kept = s.process([poll(1_000, 1), poll(2_000, 2), poll(9_000, 3)], None)
    assert len(kept) == 1 and s.collapsed == 2
    (first,) = kept
    assert first["seq"] == 1 and first["repeat_count"] == 3
    assert first["repeat_seqs"] == [2, 3]
    assert first["repeat_hashes"] == [bytes([2]) * 32, bytes([3]) * 32]
    assert first["repeat_prev_hashes"] == [bytes([1]) * 32, bytes([2]) * 32]


def test_a_repeat_after_the_window_starts_a_new_run() -> None:
    kept = stage().process([poll(1_000, 1), poll(11_001, 2), poll(12_000, 3)], None)
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
    s = stage()
    assert len(s.process([base, *others], None)) == 6 and s.collapsed == 0


def test_matched_events_and_unlisted_categories_are_never_collapsed() -> None:
    matched = [poll(1_000, 1), poll(1_001, 2, matched_rules=["R-1"])]
    files = [poll(1_000, 3, category="file"), poll(1_001, 4, category="file")]
    s = stage()
    assert len(s.process(matched + files, None)) == 4 and s.collapsed == 0
    assert len(stage(file=5).process(files, None)) == 1


def test_unchained_repeats_are_counted_without_links_and_genesis_stands_for_none() -> None:
    unchained = [poll(1_000, 1, hash=None), poll(1_001, 2, hash=None, prev_hash=None)]
    (first,) = stage().process(unchained, None)
    assert first["repeat_count"] == 2 and "repeat_seqs" not in first
    (head,) = stage().process([poll(1_000, 5), poll(1_001, 1)], None)  # seq 1: no prev_hash
    assert head["repeat_prev_hashes"] == [GENESIS]
