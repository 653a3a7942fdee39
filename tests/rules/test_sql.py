"""Rules compiled to ClickHouse SQL: literals escaped, Python-only regexes refused by
rule id (the SQL's agreement with the engine is tests/hunt/test_run.py, on ClickHouse)."""

from __future__ import annotations

import pytest

from pipeline.rules.language import parse_rules_text
from pipeline.rules.model import Match
from pipeline.rules.sql import Unsupported, condition, hunt_sql
from pipeline.schema.sql import literal


def test_a_literal_cannot_end_its_quotes() -> None:
    assert literal("a'b\\c") == "'a\\'b\\\\c'"
    assert literal("x\\') OR 1=1 --") == "'x\\\\\\') OR 1=1 --'"
    assert literal(True) == "true" and literal(3) == "3" and literal(float("nan")) == "nan"


def test_nocase_regex_is_case_insensitive_without_lowering_the_pattern() -> None:
    sql = condition(Match("actor.cmdline", "regex", (r"CURL\s+\S+",), nocase=True))
    assert "(?i)CURL\\\\s+\\\\S+" in sql and "lowerUTF8" not in sql


@pytest.mark.parametrize("pattern", ["a(?=b)", "(?<!x)y", r"(a)\1", "(?P<n>a)(?P=n)"])
def test_a_regex_re2_cannot_run_is_refused_by_the_rule_id(pattern: str) -> None:
    rules = parse_rules_text(
        f"rules:\n  - id: R-RE\n    title: t\n    severity: low\n"
        f"    condition: {{object: {{regex: '{pattern}'}}}}\n"
    )
    with pytest.raises(Unsupported, match=r"^R-RE: regex .*RE2"):
        hunt_sql(rules.rules[0], "db.events", "1")


def test_every_kind_of_rule_compiles_to_one_statement() -> None:
    rules = parse_rules_text(
        """
rules:
  - id: E
    title: t
    severity: low
    condition: {category: process}
  - id: T
    title: t
    severity: low
    condition: {category: auth, outcome: failure}
    threshold: {window: 5m, by: [actor.user], distinct: {field: object, gte: 3}}
  - id: S
    title: t
    severity: low
    sequence:
      within: 1m
      by: [object]
      steps:
        - {condition: {category: file, action: write}, join: object}
        - {condition: {category: process, action: exec}, join: object}
"""
    )
    sql = {r.id: hunt_sql(r, "db.events", "ts >= {since:DateTime64(3)}") for r in rules.rules}
    assert "GROUP BY k0, sb" in sql["E"]
    assert "RANGE BETWEEN 300000 PRECEDING AND CURRENT ROW" in sql["T"]
    assert "uniqExact" in sql["T"]
    assert "windowFunnel(60000)" in sql["S"]
    assert all(";" not in s for s in sql.values())
