"""The rule language: parsing, and lint messages with their positions."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.rules.language import (
    All,
    AnyOf,
    Match,
    Not,
    RuleError,
    load_rules,
    parse_rules_text,
)

HEADER = "rules:\n"


def _errors(text: str) -> list[str]:
    with pytest.raises(RuleError) as caught:
        parse_rules_text(text, "r.yaml")
    return [str(i) for i in caught.value.issues]


def test_lists_macros_and_nesting() -> None:
    ruleset = parse_rules_text(
        """
lists:
  shells: [bash, sh]
macros:
  net: {all: [{category: network}, {action: connect}]}
rules:
  - id: R1
    title: t
    severity: high
    tags: [attack.t1059]
    condition:
      all:
        - macro: net
        - actor.process: {in: {list: shells}}
        - not: {object_host: {cidr: 10.0.0.0/8}}
        - any: [{bytes: {gt: 5}}, {attributes.dir: out}]
"""
    )
    condition = ruleset.rules[0].condition
    assert isinstance(condition, All)
    net, shells, private, either = condition.items
    assert net == All(
        (Match("category", "equals", ("network",)), Match("action", "equals", ("connect",)))
    )
    assert shells == Match("actor.process", "equals", ("bash", "sh"))
    assert private == Not(Match("object_host", "cidr", ("10.0.0.0/8",)))
    assert either == AnyOf(
        (Match("bytes", "gt", (5.0,)), Match("attributes.dir", "equals", ("out",)))
    )
    assert ruleset.rules[0].tags == ("attack.t1059",)


def test_lint_reports_each_problem_with_line_and_rule() -> None:
    errors = _errors(
        HEADER
        + """  - id: A
    title: unknown field
    severity: low
    condition: {actr.cmdline: x}
  - id: B
    title: bad regex
    severity: low
    condition: {object: {regex: "(unclosed"}}
  - id: C
    title: impossible window
    severity: low
    condition: {category: auth}
    threshold: {window: 0s, count: 5}
  - id: D
    title: bad severity
    severity: urgent
    condition: {category: auth}
"""
    )
    assert errors[0].startswith("r.yaml:5: A: unknown field 'actr.cmdline'")
    assert errors[1].startswith("r.yaml:9: B: object: bad regex '(unclosed'")
    assert errors[2] == "r.yaml:14: C: threshold.window: a window of 0 can never hold two events"
    assert errors[3].startswith("r.yaml:15: D: severity 'urgent' is not one of")


def test_lint_refuses_text_operators_on_numbers_and_unknown_lists() -> None:
    errors = _errors(
        HEADER
        + """  - {id: A, title: t, severity: low, condition: {bytes: {contains: "1"}}}
  - {id: B, title: t, severity: low, condition: {object: {in: {list: nope}}}}
  - {id: C, title: t, severity: low, condition: {object: {cidr: 10.0.0.300/8}}}
"""
    )
    assert "bytes is a number field; contains applies to text fields" in errors[0]
    assert "unknown list 'nope'" in errors[1]
    assert "bad CIDR" in errors[2]


def test_macro_cycles_are_reported() -> None:
    errors = _errors(
        """
macros:
  a: {macro: b}
  b: {macro: a}
rules:
  - {id: A, title: t, severity: low, condition: {macro: a}}
"""
    )
    assert "refers to itself" in errors[0]


def test_duplicate_ids_across_files_name_both_places(tmp_path: Path) -> None:
    rule = "rules:\n  - {id: X, title: t, severity: low, condition: {category: auth}}\n"
    (tmp_path / "a.yaml").write_text(rule)
    (tmp_path / "b.yaml").write_text(rule)
    with pytest.raises(RuleError) as caught:
        load_rules([tmp_path], builtin=False)
    message = str(caught.value)
    assert "b.yaml:2: X: duplicate rule id (first defined at" in message
    assert "a.yaml:2" in message


def test_lists_and_macros_are_shared_between_files(tmp_path: Path) -> None:
    (tmp_path / "1-lists.yaml").write_text("lists:\n  hosts: [a.example]\n")
    (tmp_path / "2-rules.yaml").write_text(
        "rules:\n  - {id: X, title: t, severity: low, condition: {object_host: {list: hosts}}}\n"
    )
    ruleset = load_rules([tmp_path], builtin=False)
    assert ruleset.rules[0].condition == Match("object_host", "equals", ("a.example",))


def test_windows_are_always_per_sandbox_and_sequences_need_two_steps() -> None:
    ruleset = parse_rules_text(
        HEADER
        + """  - id: T
    title: t
    severity: low
    condition: {category: auth}
    threshold: {window: 1m, by: [actor.user], distinct: {field: object, gte: 3}}
"""
    )
    threshold = ruleset.rules[0].threshold
    assert threshold is not None
    assert threshold.by == ("tenant", "sandbox_id", "actor.user")
    assert (threshold.aggregate, threshold.field, threshold.window_ms) == (
        "distinct",
        "object",
        60_000,
    )
    errors = _errors(
        HEADER
        + """  - id: S
    title: t
    severity: low
    sequence: {within: 1m, steps: [{condition: {category: auth}}]}
"""
    )
    assert "a sequence needs at least two steps" in errors[0]


def test_invalid_yaml_gives_the_line() -> None:
    errors = _errors("rules:\n  - id: [unclosed\n")
    assert errors[0].startswith("r.yaml:3: not valid YAML")
