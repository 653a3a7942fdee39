"""Compiled predicates: every operator, per-category dispatch, derived fields."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.rules.compiler import compile_predicates
from pipeline.rules.language import parse_rules_text
from pipeline.rules.model import Match


def _matches(condition: str, event: dict[str, Any]) -> bool:
    ruleset = parse_rules_text(
        f"rules:\n  - {{id: R, title: t, severity: low, condition: {condition}}}\n"
    )
    condition_tree = ruleset.rules[0].condition
    assert condition_tree is not None
    return compile_predicates([condition_tree]).match(event) == [0]


EVENT = {
    "category": "network",
    "action": "connect",
    "object": "https://user@198.51.100.7:8443/upload",
    "bytes": 2048,
    "actor": {"process": "curl", "cmdline": "curl -T x https://198.51.100.7", "uid": 0},
    "attributes": {"cpu_pct": "93.5", "sim.scenario": "x"},
    "labels": {"team": "ml"},
    "sandbox_known": True,
}


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("{action: connect}", True),
        ("{action: [accept, connect]}", True),
        ("{action: Connect}", False),
        ("{action: {equals: CONNECT, nocase: true}}", True),
        ("{actor.cmdline: {contains: -T}}", True),
        ("{actor.cmdline: {contains_all: [-T, https]}}", True),
        ("{actor.cmdline: {contains_all: [-T, ftp]}}", False),
        ("{object: {startswith: https://}}", True),
        ("{object: {endswith: [/upload, /x]}}", True),
        ("{actor.cmdline: {regex: '^curl\\s+-T'}}", True),
        ("{object_host: {cidr: 198.51.100.0/24}}", True),
        ("{object_host: {cidr: 10.0.0.0/8}}", False),
        ("{object_port: 8443}", True),
        ("{bytes: {gt: 2047}}", True),
        ("{bytes: {lt: 2048}}", False),
        ("{bytes: {gte: 2048, lte: 2048}}", True),
        ("{attributes.cpu_pct: {gt: 90}}", True),
        ("{attributes.sim.scenario: x}", True),
        ("{labels.team: ml}", True),
        ("{attributes.missing: {exists: true}}", False),
        ("{attributes.missing: {exists: false}}", True),
        ("{actor.uid: 0}", True),
        ("{sandbox_known: true}", True),
        ("{not: {action: connect}}", False),
        ("{any: [{action: exec}, {bytes: {gt: 1}}]}", True),
    ],
)
def test_operators(condition: str, expected: bool) -> None:
    assert _matches(condition, EVENT) is expected


def test_non_numeric_attribute_never_compares() -> None:
    event = {**EVENT, "attributes": {"cpu_pct": "high"}}
    assert not _matches("{attributes.cpu_pct: {gt: 90}}", event)
    assert not _matches("{attributes.cpu_pct: {lte: 90}}", event)


def test_a_rule_of_one_category_is_not_evaluated_for_others() -> None:
    ruleset = parse_rules_text(
        """rules:
  - {id: A, title: t, severity: low, condition: {category: auth, object: sshd}}
  - {id: B, title: t, severity: low, condition: {object: sshd}}
"""
    )
    matcher = compile_predicates([r.condition for r in ruleset.rules if r.condition])
    assert "h.append(0)" not in matcher.source["network"]
    assert "h.append(0)" in matcher.source["auth"]
    assert matcher.match({"category": "auth", "object": "sshd"}) == [0, 1]
    assert matcher.match({"category": "network", "object": "sshd"}) == [1]
    assert matcher.match({"category": "not-a-category", "object": "sshd"}) == [1]


def test_each_field_is_read_once_per_event() -> None:
    ruleset = parse_rules_text(
        """rules:
  - {id: A, title: t, severity: low, condition: {actor.cmdline: {contains: a}}}
  - {id: B, title: t, severity: low, condition: {actor.cmdline: {contains: b}}}
"""
    )
    source = compile_predicates([r.condition for r in ruleset.rules if r.condition]).source["file"]
    assert source.count("_a.get('cmdline')") == 1


def test_a_nocase_regex_keeps_its_upper_case_classes() -> None:
    """Lower-casing the pattern would turn ``\\S`` (not a space) into ``\\s`` (a space)."""
    matcher = compile_predicates([Match("actor.cmdline", "regex", (r"CURL\s+\S+",), nocase=True)])
    assert matcher.match({"category": "process", "actor": {"cmdline": "curl http://x"}}) == [0]
    assert matcher.match({"category": "process", "actor": {"cmdline": "Curl  "}}) == []


def test_a_port_is_ascii_digits() -> None:
    matcher = compile_predicates([Match("object_port", "gte", (1,))])
    assert matcher.match({"category": "network", "object": "h:443"}) == [0]
    assert matcher.match({"category": "network", "object": "h:٤٤٣"}) == []
