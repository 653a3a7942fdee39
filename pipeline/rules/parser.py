"""Parsing one rule file's YAML into the model (``model.py``), with every problem noted
as a :class:`RuleIssue` naming the file, the line and the rule (``auditpipe rules
lint``). The YAML loader keeps each mapping's and list's line number."""

from __future__ import annotations

import ipaddress
import math
import re
from typing import Any

import yaml

from pipeline.rules.model import (
    MAX_WINDOW_MS,
    NUMBER_OPS,
    OPS,
    SEVERITIES,
    STRING_OPS,
    All,
    AnyOf,
    Condition,
    Example,
    Match,
    Not,
    Rule,
    RuleIssue,
    Sequence,
    Step,
    Threshold,
    field_kind,
    parse_duration_ms,
)

# -- YAML with line numbers -----------------------------------------------------------------


class _Map(dict[str, Any]):
    line = 0


class _Seq(list[Any]):
    line = 0


class _LineLoader(yaml.SafeLoader):
    pass


def _construct_map(loader: _LineLoader, node: yaml.MappingNode) -> _Map:
    out = _Map({str(k): v for k, v in loader.construct_mapping(node, deep=True).items()})
    out.line = node.start_mark.line + 1
    return out


def _construct_seq(loader: _LineLoader, node: yaml.SequenceNode) -> _Seq:
    out = _Seq(loader.construct_sequence(node, deep=True))
    out.line = node.start_mark.line + 1
    return out


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_seq)


def _line(node: Any, default: int) -> int:
    return int(getattr(node, "line", 0)) or default


# -- parsing --------------------------------------------------------------------------------


class _Parser:
    def __init__(self, path: str) -> None:
        self.path = path
        self.issues: list[RuleIssue] = []
        self.lists: dict[str, tuple[Any, ...]] = {}
        self.macro_nodes: dict[str, Any] = {}
        self.macros: dict[str, Condition] = {}
        self.rule_id: str | None = None
        self.seen_ids: dict[str, str] = {}
        self._expanding: list[str] = []

    def error(self, line: int, message: str) -> None:
        self.issues.append(RuleIssue(self.path, line, self.rule_id, message))

    # Conditions

    def condition(self, node: Any, line: int) -> Condition | None:
        line = _line(node, line)
        if not isinstance(node, dict) or not node:
            self.error(line, "a condition is a non-empty mapping (fields, all, any, not, macro)")
            return None
        parts: list[Condition] = []
        for key, value in node.items():
            part = self._condition_item(str(key), value, line)
            if part is not None:
                parts.append(part)
        if len(parts) != len(node):
            return None
        return parts[0] if len(parts) == 1 else All(tuple(parts))

    def _condition_item(self, key: str, value: Any, line: int) -> Condition | None:
        if key in ("all", "any"):
            if not isinstance(value, list) or not value:
                self.error(_line(value, line), f"{key} takes a non-empty list of conditions")
                return None
            items = [self.condition(v, _line(value, line)) for v in value]
            if any(i is None for i in items):
                return None
            checked = tuple(i for i in items if i is not None)
            return All(checked) if key == "all" else AnyOf(checked)
        if key == "not":
            inner = self.condition(value, line)
            return None if inner is None else Not(inner)
        if key == "macro":
            return self._macro(str(value), line)
        return self._field(key, value, line)

    def _macro(self, name: str, line: int) -> Condition | None:
        if name in self.macros:
            return self.macros[name]
        if name not in self.macro_nodes:
            self.error(line, f"unknown macro {name!r}")
            return None
        if name in self._expanding:
            self.error(line, f"macro {name!r} refers to itself ({' -> '.join(self._expanding)})")
            return None
        self._expanding.append(name)
        try:
            parsed = self.condition(self.macro_nodes[name], line)
        finally:
            self._expanding.pop()
        if parsed is not None:
            self.macros[name] = parsed
        return parsed

    def _field(self, name: str, spec: Any, line: int) -> Condition | None:
        kind = field_kind(name)
        if kind is None:
            self.error(line, f"unknown field {name!r} (see docs/rules.md, 'Fields')")
            return None
        if not isinstance(spec, dict) or set(spec) == {"list"}:
            return self._op(name, kind, "equals", spec, False, line)  # the same checks
        nocase = bool(spec.get("nocase", False))
        matches: list[Condition] = []
        for op, raw in spec.items():
            if op == "nocase":
                continue
            built = self._op(name, kind, str(op), raw, nocase, _line(spec, line))
            if built is None:
                return None
            matches.append(built)
        if not matches:
            self.error(line, f"{name}: no operator given")
            return None
        return matches[0] if len(matches) == 1 else All(tuple(matches))

    def _op(self, name: str, kind: str, op: str, raw: Any, nocase: bool, line: int) -> Match | None:
        if op not in OPS:
            self.error(line, f"{name}: unknown operator {op!r} (known: {', '.join(OPS)})")
            return None
        if op == "exists":
            return Match(name, op, (bool(raw),))
        values = self._values(raw, line)
        if values is None:
            return None
        if op in NUMBER_OPS:
            return self._number_op(name, op, values, line)
        if op in STRING_OPS[2:] and kind != "text":
            self.error(line, f"{name} is a {kind} field; {op} applies to text fields")
            return None
        if op == "regex":
            for pattern in values:
                try:
                    re.compile(str(pattern))
                except re.error as exc:
                    self.error(line, f"{name}: bad regex {pattern!r}: {exc}")
                    return None
        if op == "cidr":
            for network in values:
                try:
                    ipaddress.ip_network(str(network), strict=False)
                except ValueError as exc:
                    self.error(line, f"{name}: bad CIDR {network!r}: {exc}")
                    return None
        op = "equals" if op == "in" else op
        if kind == "text" or op == "cidr":
            values = tuple(str(v) for v in values)
        elif kind == "number" and not all(_finite(v) for v in values):
            self.error(line, f"{name} is a number field; {values!r} are not all finite numbers")
            return None
        return Match(name, op, values, nocase and kind == "text")

    def _number_op(self, name: str, op: str, values: tuple[Any, ...], line: int) -> Match | None:
        if len(values) != 1 or isinstance(values[0], bool):
            self.error(line, f"{name}: {op} takes one number")
            return None
        try:
            number = float(values[0])
        except (TypeError, ValueError, OverflowError):
            number = math.nan
        if not math.isfinite(number):  # .inf/.nan would compile to code that raises
            self.error(line, f"{name}: {op} takes a finite number, not {values[0]!r}")
            return None
        return Match(name, op, (number,))

    def _values(self, raw: Any, line: int) -> tuple[Any, ...] | None:
        if isinstance(raw, dict):
            if set(raw) != {"list"}:
                self.error(line, f"a value is a scalar, a list or {{list: NAME}}, not {dict(raw)}")
                return None
            name = str(raw["list"])
            if name not in self.lists:
                self.error(line, f"unknown list {name!r}")
                return None
            return self.lists[name]
        if isinstance(raw, list):
            if not raw:
                self.error(_line(raw, line), "an empty list matches nothing")
                return None
            out: list[Any] = []
            for item in raw:
                expanded = self._values(item, line)
                if expanded is None:
                    return None
                out.extend(expanded)
            return tuple(out)
        if raw is None:
            self.error(line, "a value is missing (null)")
            return None
        return (raw,)

    # Rules

    def rule(self, node: Any, line: int) -> Rule | None:
        line = _line(node, line)
        if not isinstance(node, dict):
            self.error(line, "a rule is a mapping")
            return None
        raw_id = node.get("id")
        self.rule_id = str(raw_id) if raw_id not in (None, "") else None
        before = len(self.issues)
        if self.rule_id is not None:
            first = self.seen_ids.setdefault(self.rule_id, f"{self.path}:{line}")
            if first != f"{self.path}:{line}":
                self.error(line, f"duplicate rule id (first defined at {first})")
        if raw_id is not None and not isinstance(raw_id, str):
            self.error(line, f"id {raw_id!r} is not text; quote it (YAML reads OFF, 1e3 ...)")
        known = {
            "id", "title", "description", "severity", "tags", "enabled", "condition",
            "threshold", "sequence", "suppress", "examples",
        }  # fmt: skip
        for key in node:
            if key not in known:
                self.error(line, f"unknown key {key!r} (known: {', '.join(sorted(known))})")
        if not self.rule_id:
            self.error(line, "a rule needs an id")
        if not node.get("title"):
            self.error(line, "a rule needs a title")
        severity = str(node.get("severity", ""))
        if severity not in SEVERITIES:
            self.error(line, f"severity {severity!r} is not one of {', '.join(SEVERITIES)}")
        sequence = self._sequence(node["sequence"], line) if "sequence" in node else None
        if "condition" in node:
            condition = self.condition(node["condition"], line)
        elif sequence is None:
            self.error(line, "a rule needs a condition (or a sequence)")
            condition = None
        else:
            condition = None
        threshold = self._threshold(node["threshold"], line) if "threshold" in node else None
        if threshold and sequence:
            self.error(line, "a rule is a threshold or a sequence, not both")
        suppress = (
            self._duration(node["suppress"], line, "suppress") if "suppress" in node else None
        )
        positive, negative = self._examples(node.get("examples"), line)
        if len(self.issues) > before:
            return None
        return Rule(
            id=str(self.rule_id),
            title=str(node["title"]),
            description=str(node.get("description", "")).strip(),
            severity=severity,
            tags=tuple(str(t) for t in node.get("tags") or ()),
            enabled=bool(node.get("enabled", True)),
            condition=condition,
            threshold=threshold,
            sequence=sequence,
            suppress_ms=suppress,
            positive=positive,
            negative=negative,
            path=self.path,
            line=line,
        )

    def _duration(self, raw: Any, line: int, what: str) -> int | None:
        try:
            ms = parse_duration_ms(raw)
        except ValueError as exc:
            self.error(line, f"{what}: {exc}")
            return None
        if ms < 0 or ms > MAX_WINDOW_MS:
            self.error(line, f"{what}: {raw!r} is outside 0 .. 7 days")
            return None
        return ms

    def _window(self, raw: Any, line: int, what: str) -> int | None:
        ms = self._duration(raw, line, what)
        if ms == 0:
            self.error(line, f"{what}: a window of 0 can never hold two events")
            return None
        return ms

    def _by(self, raw: Any, line: int) -> tuple[str, ...]:
        by = tuple(str(f) for f in (raw if isinstance(raw, list) else [raw])) if raw else ()
        for name in by:
            if field_kind(name) is None:
                self.error(line, f"by: unknown field {name!r}")
        # Events are partitioned by sandbox: window state is always per sandbox.
        return ("tenant", "sandbox_id", *(f for f in by if f not in ("tenant", "sandbox_id")))

    def _threshold(self, node: Any, line: int) -> Threshold | None:
        line = _line(node, line)
        if not isinstance(node, dict):
            self.error(line, "threshold is a mapping (window, by, and count, sum or distinct)")
            return None
        window = self._window(node.get("window"), line, "threshold.window")
        aggregates = [a for a in ("count", "sum", "distinct") if a in node]
        if len(aggregates) != 1:
            self.error(line, "threshold needs exactly one of count, sum or distinct")
            return None
        aggregate = aggregates[0]
        spec = node[aggregate]
        spec = {"gte": spec} if not isinstance(spec, dict) else dict(spec)
        target = spec.pop("field", None)
        if aggregate != "count" and field_kind(str(target)) is None:
            self.error(line, f"threshold.{aggregate} needs a known field, not {target!r}")
        comparisons = [(op, v) for op, v in spec.items() if op in NUMBER_OPS]
        if len(comparisons) != 1 or len(spec) != 1:
            self.error(line, f"threshold.{aggregate} needs one of gt, gte, lt, lte and a number")
            return None
        op, value = comparisons[0]
        if not _finite(value):
            self.error(line, f"threshold.{aggregate}.{op} must be a finite number, not {value!r}")
            return None
        if op in ("lt", "lte"):
            self.error(line, f"threshold.{aggregate}.{op}: a window fires when it rises above")
        unknown = set(node) - {"window", "by", aggregate}
        if unknown:
            self.error(line, f"threshold: unknown key {sorted(unknown)[0]!r}")
        by = self._by(node.get("by"), line)
        if window is None:
            return None
        return Threshold(
            aggregate, None if target is None else str(target), op, float(value), window, by
        )

    def _sequence(self, node: Any, line: int) -> Sequence | None:
        line = _line(node, line)
        if not isinstance(node, dict) or not isinstance(node.get("steps"), list):
            self.error(line, "sequence is a mapping with within, by and a list of steps")
            return None
        within = self._window(node.get("within"), line, "sequence.within")
        steps = []
        for raw in node["steps"]:
            step_line = _line(raw, line)
            if not isinstance(raw, dict) or "condition" not in raw:
                self.error(step_line, "a step is a mapping with a condition (and an optional join)")
                return None
            join = raw.get("join")
            if join is not None and field_kind(str(join)) is None:
                self.error(step_line, f"join: unknown field {join!r}")
            condition = self.condition(raw["condition"], step_line)
            if condition is None:
                return None
            steps.append(Step(condition, None if join is None else str(join)))
        if len(steps) < 2:
            self.error(line, "a sequence needs at least two steps")
        joins = {s.join is None for s in steps}
        if len(joins) > 1:
            self.error(line, "join: every step names its join field, or none does")
        by = self._by(node.get("by"), line)
        unknown = set(node) - {"within", "by", "steps", "ordered"}
        if unknown:
            self.error(line, f"sequence: unknown key {sorted(unknown)[0]!r}")
        if within is None or len(steps) < 2:
            return None
        return Sequence(tuple(steps), within, by, bool(node.get("ordered", True)))

    def _examples(self, node: Any, line: int) -> tuple[tuple[Example, ...], tuple[Example, ...]]:
        if node is None:
            return (), ()
        if not isinstance(node, dict) or set(node) - {"match", "no_match"}:
            self.error(_line(node, line), "examples has match and no_match lists of events")
            return (), ()
        out: list[tuple[Example, ...]] = []
        for key in ("match", "no_match"):
            items = node.get(key) or []
            out.append(
                tuple(
                    Example(dict(e), _line(e, _line(items, line)))
                    for e in items
                    if isinstance(e, dict)
                )
            )
        return out[0], out[1]


def _finite(value: Any) -> bool:
    """A YAML number (not a bool) that a comparison can use: .inf, .nan and integers past
    a float's range are refused."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False
