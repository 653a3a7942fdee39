"""The default rule pack: its examples, the simulator's attacks, and its benign mix."""

from __future__ import annotations

from collections import Counter

import pytest

from pipeline.rules.engine import DetectionEngine
from pipeline.rules.examples import run_examples
from pipeline.rules.language import RuleSet, load_rules
from pipeline.sim.near_misses import NEAR_MISSES
from pipeline.sim.scenarios import SCENARIOS
from pipeline.sim.simulate import FleetSimulator

PACK = load_rules([])

EXPECTED = {
    "reverse-shell": {"AP-EXE-001", "AP-EXE-002", "AP-EXE-003"},
    "credential-read": {"AP-CRED-001", "AP-CRED-002", "AP-CRED-003"},
    "privilege-escalation": {"AP-PRIV-001", "AP-PRIV-002", "AP-PRIV-003", "AP-PRIV-004"},
    "container-escape": {"AP-CTR-001", "AP-CTR-002", "AP-CTR-003", "AP-CTR-004"},
    "data-exfiltration": {"AP-EXF-001"},
    "crypto-mining": {"AP-MIN-001", "AP-MIN-002", "AP-MIN-003"},
    "brute-force": {"AP-AUTH-001"},
    "audit-tampering": {"AP-EVA-001", "AP-EVA-002"},
}


@pytest.mark.parametrize("rule", PACK.rules, ids=lambda r: r.id)
def test_every_rule_has_examples_and_they_hold(rule: object) -> None:
    results = run_examples(RuleSet([rule], PACK.lists))  # type: ignore[list-item]
    assert any(r.expected for r in results), "no positive example"
    assert any(not r.expected for r in results), "no negative example"
    assert [str(r) for r in results if not r.ok] == []


def test_the_pack_covers_the_threat_classes_of_the_issue() -> None:
    tags = " ".join(t for r in PACK.rules for t in r.tags)
    for technique in ("t1059", "t1003", "t1552.005", "t1548", "t1611", "t1053", "t1543",
                      "t1546", "t1562", "t1070", "t1048", "t1496", "t1110", "t1528",
                      "t1046", "t1018", "t1021", "t1082", "t1547.006", "t1098.004",
                      "t1574.006", "t1105", "t1041"):  # fmt: skip
        assert technique in tags


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_each_attack_scenario_raises_its_alerts(scenario: str) -> None:
    engine = DetectionEngine(PACK)
    events = list(FleetSimulator(sandboxes=10, seed=3).events(3000, scenarios=[scenario]))
    attacked = {e["sandbox_id"] for e in events if e["attributes"].get("sim.scenario")}
    alerts = engine.process(events)
    assert EXPECTED[scenario] <= {a.rule_id for a in alerts}
    assert {a.sandbox_id for a in alerts} == attacked


def test_the_benign_mix_raises_no_alert() -> None:
    engine = DetectionEngine(PACK)
    simulator = FleetSimulator(sandboxes=40, tenants=5, seed=11)
    alerts = []
    for _ in range(20):
        alerts += engine.process(list(simulator.events(10_000)))
    assert Counter(a.rule_id for a in alerts) == Counter()


@pytest.mark.parametrize("near_miss", sorted(NEAR_MISSES))
def test_a_benign_near_miss_raises_no_alert(near_miss: str) -> None:
    engine = DetectionEngine(PACK)
    simulator = FleetSimulator(sandboxes=5, seed=8)
    events = simulator.with_inventory(list(simulator.events(2000, scenarios=[near_miss] * 3)))
    assert sum(1 for e in events if e["attributes"].get("sim.near_miss")) >= 6
    assert Counter(a.rule_id for a in engine.process(events)) == Counter()


def test_uploads_to_the_own_bucket_alert_without_the_inventory() -> None:
    """The own-bucket near miss is benign because of the inventory alone: without its
    labels the same uploads are exfiltration by both thresholds."""
    simulator = FleetSimulator(sandboxes=5, seed=8)
    events = list(simulator.events(2000, scenarios=["own-bucket-uploads"]))
    fired = {a.rule_id for a in DetectionEngine(PACK).process(events)}
    assert {"AP-EXF-001", "AP-EXF-002"} <= fired
