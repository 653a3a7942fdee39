"""The rule language: YAML files of lists, macros and rules, parsed into a checked model.

Every problem found while parsing (``auditpipe rules lint``) is a :class:`RuleIssue` that
names the file, the line and the rule. ``docs/rules.md`` documents the language; in
short::

    lists:
      shells: [bash, sh, zsh, dash]
    macros:
      outbound:
        all: [{category: network}, {action: connect}]
    rules:
      - id: AP-1001
        title: Shell connects out
        severity: high
        tags: [attack.t1059.004]
        condition:
          all:
            - macro: outbound
            - actor.process: {in: {list: shells}}

>>> rules = parse_rules_text('''
... rules:
...   - id: R1
...     title: t
...     severity: low
...     condition: {category: process, actor.cmdline: {contains: nc -e}}
... ''')
>>> rules.rules[0].condition
All(items=(Match(field='category', op='equals', values=('process',), nocase=False), \
Match(field='actor.cmdline', op='contains', values=('nc -e',), nocase=False)))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pipeline.rules.model import (
    BOOL_FIELDS,
    MAP_PREFIXES,
    MAX_WINDOW_MS,
    NUMBER_FIELDS,
    NUMBER_OPS,
    OPS,
    SEVERITIES,
    STRING_FIELDS,
    STRING_OPS,
    All,
    AnyOf,
    Condition,
    Example,
    Match,
    Not,
    Rule,
    RuleError,
    RuleIssue,
    RuleSet,
    Sequence,
    Step,
    Threshold,
    field_kind,
    parse_duration_ms,
)
from pipeline.rules.parser import _line, _LineLoader, _Parser

__all__ = [
    "BOOL_FIELDS",
    "MAP_PREFIXES",
    "MAX_WINDOW_MS",
    "NUMBER_FIELDS",
    "NUMBER_OPS",
    "OPS",
    "SEVERITIES",
    "STRING_FIELDS",
    "STRING_OPS",
    "All",
    "AnyOf",
    "Condition",
    "Example",
    "Match",
    "Not",
    "Rule",
    "RuleError",
    "RuleIssue",
    "RuleSet",
    "Sequence",
    "Step",
    "Threshold",
    "field_kind",
    "load_rules",
    "merge",
    "parse_duration_ms",
    "parse_rules",
    "parse_rules_text",
    "rule_files",
]


def _read_yaml(text: str, path: str) -> Any:
    try:
        return yaml.load(text, Loader=_LineLoader)  # _LineLoader is a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise RuleError([RuleIssue(path, line, None, f"not valid YAML: {exc}")]) from exc


def _check_top(data: Any, path: str) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RuleError(
            [RuleIssue(path, 1, None, "a rule file is a mapping (lists, macros, rules)")]
        )
    return data


def _shared(parser: _Parser, files: list[tuple[str, dict[str, Any]]]) -> None:
    """Lists and macros of every file, visible to the rules of every file."""
    for path, data in files:
        parser.path = path
        for key in set(data) - {"lists", "macros", "rules"}:
            parser.error(_line(data, 1), f"unknown top-level key {key!r} (lists, macros, rules)")
        for name, items in (data.get("lists") or {}).items():
            values = parser._values(items if isinstance(items, list) else [items], _line(items, 1))
            if values is not None:
                parser.lists[str(name)] = values
        for name, node in (data.get("macros") or {}).items():
            parser.macro_nodes[str(name)] = node


def _parse_files(files: list[tuple[str, dict[str, Any]]]) -> RuleSet:
    parser = _Parser(files[0][0] if files else "<none>")
    _shared(parser, files)
    rules: list[Rule] = []
    for path, data in files:
        parser.path = path
        raw_rules = data.get("rules") or []
        if not isinstance(raw_rules, list):
            parser.error(_line(raw_rules, 1), "rules is a list")
            continue
        for node in raw_rules:
            rule = parser.rule(node, _line(raw_rules, 1))
            if rule is not None:
                rules.append(rule)
        parser.rule_id = None
    if parser.issues:
        raise RuleError(parser.issues)
    return merge([RuleSet(rules, parser.lists)])


def parse_rules(data: Any, path: str = "<string>") -> RuleSet:
    """A rule file's YAML data as a RuleSet; RuleError lists every problem."""
    return _parse_files([(path, _check_top(data, path))])


def parse_rules_text(text: str, path: str = "<string>") -> RuleSet:
    return parse_rules(_read_yaml(text, path), path)


def merge(rulesets: list[RuleSet]) -> RuleSet:
    """Several files as one set; an id defined twice is an error naming both places."""
    seen: dict[str, Rule] = {}
    issues = []
    merged = RuleSet()
    for ruleset in rulesets:
        for rule in ruleset.rules:
            first = seen.get(rule.id)
            if first is not None:
                issues.append(
                    RuleIssue(
                        rule.path,
                        rule.line,
                        rule.id,
                        f"duplicate rule id (first defined at {first.path}:{first.line})",
                    )
                )
                continue
            seen[rule.id] = rule
            merged.rules.append(rule)
        merged.lists.update(ruleset.lists)
    if issues:
        raise RuleError(issues)
    return merged


BUILTIN_DIR = Path(__file__).parent / "pack"


def rule_files(paths: list[Path], builtin: bool = True) -> list[Path]:
    """The YAML files to load: the built-in pack (unless off), then each path (a file or a
    directory of ``*.yaml``/``*.yml``), in name order."""
    roots = ([BUILTIN_DIR] if builtin else []) + list(paths)
    files: list[Path] = []
    for root in roots:
        if root.is_dir():
            files.extend(sorted([*root.glob("*.yaml"), *root.glob("*.yml")]))
        else:
            files.append(root)
    return files


def load_rules(paths: list[Path], builtin: bool = True) -> RuleSet:
    """Every rule of the files, checked; RuleError lists the problems of all files.

    Lists and macros are shared: a rule may use those of any file loaded with it.
    """
    files: list[tuple[str, dict[str, Any]]] = []
    issues: list[RuleIssue] = []
    for path in rule_files(paths, builtin):
        try:
            files.append(
                (str(path), _check_top(_read_yaml(path.read_text(), str(path)), str(path)))
            )
        except OSError as exc:
            issues.append(RuleIssue(str(path), 0, None, f"cannot read: {exc.strerror}"))
        except RuleError as exc:
            issues.extend(exc.issues)
    if issues:
        raise RuleError(issues)
    return _parse_files(files)
