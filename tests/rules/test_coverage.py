from __future__ import annotations

from pipeline.rules.coverage import coverage, navigator_layer
from pipeline.rules.language import load_rules
from pipeline.rules.model import Rule


def rule(rule_id: str, *tags: str, enabled: bool = True) -> Rule:
    return Rule(rule_id, rule_id, "high", None, tags=tags, enabled=enabled)


def test_enabled_rules_count_by_technique_and_tactic() -> None:
    found = coverage(
        [
            rule("A", "attack.execution", "attack.t1059.004", "attack.T1059.004"),
            rule("B", "attack.t1059", "attack.command_and_control"),
            rule("C", "attack.t1611", enabled=False),
            rule("D", "team.ops"),
        ]
    )
    assert dict(found.techniques) == {"T1059.004": ["A"], "T1059": ["B"]}
    assert dict(found.tactics) == {
        ("TA0002", "Execution"): ["A"],
        ("TA0011", "Command and Control"): ["B"],
    }
    assert found.untagged == ["D"] and found.rules == 3


def test_the_layer_has_what_the_navigator_reads() -> None:
    layer = navigator_layer(coverage([rule("A", "attack.t1611"), rule("B", "attack.t1611")]))
    assert layer["domain"] == "enterprise-attack"
    assert set(layer["versions"]) == {"attack", "navigator", "layer"}
    (entry,) = layer["techniques"]
    assert entry["techniqueID"] == "T1611" and entry["score"] == 2
    assert entry["comment"] == "rules: A, B"
    assert layer["gradient"]["maxValue"] == 2


def test_the_default_pack_covers_what_its_rules_claim() -> None:
    found = coverage(load_rules([], builtin=True).rules)
    assert "T1611" in found.techniques and "T1003.008" in found.techniques
