"""The detection engine: batches in, alerts out, matched ids on events, reloads."""

from __future__ import annotations

from pipeline.rules.engine import DetectionEngine
from pipeline.rules.examples import example_event
from pipeline.rules.language import parse_rules_text

RULES = """
rules:
  - {id: SHADOW, title: Shadow read, severity: high, tags: [attack.t1003.008],
     condition: {category: file, object: /etc/shadow}}
  - id: BRUTE
    title: Brute force
    severity: high
    condition: {category: auth, outcome: failure}
    threshold: {window: 60s, count: 3}
  - id: DISABLED
    title: disabled
    severity: low
    enabled: false
    condition: {category: file}
"""


def _engine(rules: str = RULES, **kwargs: int) -> DetectionEngine:
    return DetectionEngine(parse_rules_text(rules), **kwargs)


def test_alerts_carry_rule_sandbox_times_and_evidence() -> None:
    engine = _engine()
    events = [example_event({"category": "file", "object": "/etc/shadow", "ts": 5}, 0)]
    (alert,) = engine.process(events)
    assert (alert.rule_id, alert.severity, alert.tags) == ("SHADOW", "high", ("attack.t1003.008",))
    assert (alert.tenant, alert.sandbox_id) == ("example", "sb-example")
    assert alert.first_ts == alert.last_ts == events[0]["ts"]
    assert alert.evidence == ("example-0",) and alert.count == 1
    assert events[0]["matched_rules"] == ["SHADOW"]


def test_threshold_evidence_events_are_all_marked() -> None:
    engine = _engine()
    events = [
        example_event({"category": "auth", "outcome": "failure", "ts": i * 1000}, i)
        for i in range(3)
    ]
    (alert,) = engine.process(events)
    assert alert.rule_id == "BRUTE" and alert.count == 3
    assert all(e["matched_rules"] == ["BRUTE"] for e in events)


def test_threshold_holds_across_batches() -> None:
    engine = _engine()
    events = [
        example_event({"category": "auth", "outcome": "failure", "ts": i * 1000}, i)
        for i in range(3)
    ]
    assert engine.process(events[:2]) == []
    assert [a.rule_id for a in engine.process(events[2:])] == ["BRUTE"]


def test_alert_ids_are_deterministic() -> None:
    event = {"category": "file", "object": "/etc/shadow"}
    first = _engine().process([example_event(event, 0)])
    again = _engine().process([example_event(event, 0)])
    assert first[0].alert_id == again[0].alert_id


def test_repeats_are_suppressed_into_one_summary() -> None:
    engine = _engine(suppress_ms=60_000)
    reads = [
        example_event({"category": "file", "object": "/etc/shadow", "ts": i * 1000}, i)
        for i in range(5)
    ]
    (first,) = engine.process(reads)
    assert first.count == 1
    later = example_event({"category": "file", "object": "/etc/passwd", "ts": 120_000}, 9)
    (summary,) = engine.process([later])
    assert summary.rule_id == "SHADOW" and summary.count == 4
    assert summary.evidence == tuple(f"example-{i}" for i in range(1, 5))
    assert summary.alert_id != first.alert_id


def test_reload_keeps_windows_of_unchanged_rules_only() -> None:
    old = _engine()
    failures = [
        example_event({"category": "auth", "outcome": "failure", "ts": i}, i) for i in range(2)
    ]
    old.process(failures)
    same = _engine()
    assert same.adopt_state(old) == []
    third = example_event({"category": "auth", "outcome": "failure", "ts": 3}, 3)
    assert [a.rule_id for a in same.process([third])] == ["BRUTE"]

    changed = _engine(RULES.replace("count: 3", "count: 2"))
    old2 = _engine()
    old2.process(failures[:1])
    assert changed.adopt_state(old2) == ["BRUTE"]


def test_persisted_state_restores_into_a_new_engine() -> None:
    engine = _engine()
    failures = [
        example_event({"category": "auth", "outcome": "failure", "ts": i, "kafka_partition": 4}, i)
        for i in range(3)
    ]
    engine.process(failures[:2])
    changes = engine.take_state_changes()
    assert [(p, k.split("\x1d")[0]) for p, k, _ in changes] == [(4, "BRUTE")]
    restarted = _engine()
    for partition, key, data in changes:
        assert data is not None and restarted.restore_state(partition, key, data)
    assert [a.rule_id for a in restarted.process(failures[2:])] == ["BRUTE"]
    assert not restarted.restore_state(4, "GONE\x1dabc\x1fexample\x1fsb", b"[]")
    # The same rule with another definition does not take the old state.
    changed = _engine(RULES.replace("count: 3", "count: 2"))
    assert not any(changed.restore_state(p, k, d or b"") for p, k, d in changes)


def test_disabled_rules_do_not_run() -> None:
    engine = _engine()
    event = example_event({"category": "file", "object": "/tmp/x"}, 0)
    assert engine.process([event]) == [] and "matched_rules" not in event


BY_USER = """
rules:
  - id: SPRAY
    title: Password spray
    severity: high
    condition: {category: auth, outcome: failure}
    threshold: {window: 60s, count: 4, by: [actor.user]}
"""


def _auth_failure(tenant: str, n: int, ts: int, user: str = "root") -> dict[str, object]:
    event = example_event(
        {"category": "auth", "outcome": "failure", "ts": ts, "actor": {"user": user}}, n
    )
    event.update(tenant=tenant, sandbox_id="sb-1", event_id=f"{tenant}-{n}")
    return event


def test_windows_grouped_by_a_field_alone_still_count_each_tenant_apart() -> None:
    """Two tenants, same sandbox names and users: 2 + 2 failures are not 4 of one."""
    engine = _engine(BY_USER)
    events = [_auth_failure(t, n, 1_000 * n) for n in range(2) for t in ("acme", "globex")]
    assert engine.process(events) == []
    (alert,) = engine.process([_auth_failure("acme", n, 2_000 + n) for n in (2, 3)])
    assert alert.tenant == "acme" and alert.count == 4
    assert all(e.startswith("acme-") for e in alert.evidence)


def test_one_tenants_future_events_do_not_expire_another_tenants_windows() -> None:
    engine = _engine(BY_USER)
    engine.process([_auth_failure("acme", n, 10_000 + n) for n in range(3)])
    # globex jumps a day ahead: its clock, not acme's.
    engine.process([_auth_failure("globex", 99, 10_000 + 86_400_000)])
    engine.expire()
    assert engine.watermarks.of("globex") - engine.watermarks.of("acme") == 86_400_000 - 2
    (alert,) = engine.process([_auth_failure("acme", 3, 10_003)])
    assert alert.tenant == "acme" and alert.count == 4


def test_the_live_chain_check_keeps_tenants_with_the_same_sandbox_apart() -> None:
    from pipeline.chain.hashing import ChainHead
    from pipeline.schema.event import normalize_event

    engine = DetectionEngine(parse_rules_text("rules: []"), integrity=True)
    heads = {"acme": ChainHead(), "globex": ChainHead()}
    events = []
    for n in range(4):
        for tenant in ("acme", "globex"):
            event = normalize_event(
                {"tenant": tenant, "sandbox_id": "sb-1", "event_id": f"{tenant}-{n}",
                 "category": "auth", "action": "login", "ts": 1_795_860_000_000 + n},
                now_ms=0,
            )  # fmt: skip
            heads[tenant].seal(event)
            events.append(event)
    assert engine.process(events) == []  # interleaved, each chain is whole


def test_window_evictions_are_counted_for_the_metrics() -> None:
    """A flood into one key's window (one value repeated under a distinct-count rule)
    is capped; what left the window is counted."""
    flood = DetectionEngine(parse_rules_text("""
rules:
  - id: MANY
    title: many distinct
    severity: low
    condition: {category: auth}
    threshold: {window: 60s, distinct: {field: actor.user, gte: 1000}}
"""), max_window_events=10)  # fmt: skip
    assert flood.process([_auth_failure("acme", n, 1_000 + n, "same") for n in range(25)]) == []
    assert flood.window_evictions == 15
