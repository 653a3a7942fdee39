"""The live chain check: gaps, forks and changed events raise integrity alerts."""

from __future__ import annotations

from pipeline.chain.hashing import ChainHead
from pipeline.rules.engine import DetectionEngine
from pipeline.rules.examples import example_event
from pipeline.rules.integrity import ChainMonitor
from pipeline.rules.language import RuleSet


def chained(n: int, sandbox: str = "sb-example") -> list[dict[str, object]]:
    head = ChainHead()
    events = []
    for i in range(n):
        event = example_event({"category": "file", "action": "read", "object": f"/f{i}"}, i)
        event["sandbox_id"] = sandbox
        events.append(head.seal(event))
    return events


def _engine() -> DetectionEngine:
    return DetectionEngine(RuleSet(), integrity=True, suppress_ms=0)


def test_an_intact_chain_raises_nothing() -> None:
    assert _engine().process(chained(20)) == []


def test_a_skipped_seq_is_a_gap() -> None:
    events = chained(6)
    del events[3]
    (alert,) = _engine().process(events)
    assert alert.rule_id == "AP-INT-GAP" and alert.severity == "critical"
    assert alert.evidence == (events[3]["event_id"],)
    assert "integrity" in alert.tags
    assert events[3]["matched_rules"] == ["AP-INT-GAP"]


def test_changed_content_is_a_hash_mismatch() -> None:
    events = chained(4)
    events[2]["object"] = "/etc/innocent"
    assert [a.rule_id for a in _engine().process(events)] == ["AP-INT-HASH"]


def test_a_rewritten_history_is_a_fork() -> None:
    events = chained(3)
    other = chained(3, "sb-example")  # the same seqs with other content
    other[2]["object"] = "/x"
    rewritten = ChainHead(2, events[1]["hash"]).seal(dict(other[2], seq=None))  # type: ignore[arg-type]
    engine = _engine()
    assert engine.process(events) == []
    assert [a.rule_id for a in engine.process([rewritten])] == ["AP-INT-FORK"]
    # A seq that comes again with the same hash is a replay, not a fork.
    assert _engine().process(events + events[1:]) == []


def test_prev_hash_that_does_not_link_is_a_fork() -> None:
    first, second = chained(2), chained(2, "sb-example")
    second[1]["object"] = "/other"
    forked = ChainHead(1, b"\x01" * 32).seal(dict(second[1], seq=None))  # type: ignore[arg-type]
    assert [a.rule_id for a in _engine().process([first[0], forked])] == ["AP-INT-FORK"]


def test_after_a_restart_the_next_event_is_the_baseline() -> None:
    events = chained(5)
    engine = _engine()
    engine.process(events[:3])
    assert engine.take_state_changes() == []  # chain heads are not persisted
    restarted = _engine()
    assert restarted.process(events[4:]) == []  # no false gap across the restart


def test_events_without_seq_are_not_checked() -> None:
    monitor = ChainMonitor()
    event = example_event({"category": "file"}, 0) | {"seq": None}
    assert monitor.check(event) == []


def test_a_checkpoint_never_signs_a_head_that_was_dead_lettered() -> None:
    """The newest events of a chain were dead-lettered after the check (a secret after
    sealing, a row ClickHouse refused): the checkpoint signs the newest stored one."""
    events = chained(5)
    tenant, sandbox = str(events[0]["tenant"]), str(events[0]["sandbox_id"])
    monitor = ChainMonitor()
    for event in events:
        assert monitor.check(event) == []  # type: ignore[arg-type]
    monitor.not_stored([(tenant, sandbox, 5), (tenant, sandbox, 4)])
    (signed,) = monitor.take_checkpoints()
    assert signed[2] == 3 and bytes.fromhex(signed[3]) == events[2]["hash"]
    assert monitor.take_checkpoints() == []  # 4 and 5 are never signed later either
