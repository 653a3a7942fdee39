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

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SEVERITIES = ("low", "medium", "high", "critical")
STRING_FIELDS = frozenset(
    (
        "event_id",
        "tenant",
        "sandbox_id",
        "category",
        "action",
        "level",
        "outcome",
        "object",
        "prev_hash",
        "hash",
        "owner",
        "environment",
        "image",
        "severity",
        "actor.user",
        "actor.process",
        "actor.cmdline",
        "object_host",
    )
)
"""Fields holding text. ``object_host`` is derived: the host of ``object`` (host:port, URL)."""
NUMBER_FIELDS = frozenset(
    ("ts", "seq", "bytes", "actor.uid", "actor.pid", "actor.ppid", "object_port")
)
BOOL_FIELDS = frozenset(("sandbox_known",))
MAP_PREFIXES = ("attributes.", "labels.")
"""``attributes.<key>`` and ``labels.<key>`` reach into the maps (values are text)."""

STRING_OPS = ("equals", "in", "contains", "contains_all", "startswith", "endswith", "regex")
NUMBER_OPS = ("gt", "gte", "lt", "lte")
OPS = (*STRING_OPS, *NUMBER_OPS, "cidr", "exists")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, None: 1000}
MAX_WINDOW_MS = 7 * 86_400_000
"""Windows longer than a week are refused: their state would grow without bound."""


class RuleError(ValueError):
    """A rule file cannot be used; ``issues`` holds every problem found."""

    def __init__(self, issues: list[RuleIssue]) -> None:
        super().__init__("\n".join(str(i) for i in issues))
        self.issues = issues


@dataclass(frozen=True)
class RuleIssue:
    path: str
    line: int
    rule_id: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}"
        return (
            f"{where}: {self.rule_id}: {self.message}"
            if self.rule_id
            else f"{where}: {self.message}"
        )


# -- condition tree -----------------------------------------------------------------------


@dataclass(frozen=True)
class Match:
    """One field test: ``op`` over ``values`` (any of them; all of them for contains_all)."""

    field: str
    op: str
    values: tuple[Any, ...]
    nocase: bool = False


@dataclass(frozen=True)
class All:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    item: Condition


Condition = Match | All | AnyOf | Not


# -- rules ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Threshold:
    """Fire when the aggregate of the matching events of one key, over ``window_ms``,
    passes ``op value``. ``aggregate`` is count, sum (of ``field``) or distinct (values
    of ``field``)."""

    aggregate: str
    field: str | None
    op: str
    value: float
    window_ms: int
    by: tuple[str, ...]


@dataclass(frozen=True)
class Step:
    condition: Condition
    join: str | None = None
    """A field whose value must be equal in every step (e.g. the downloaded path)."""


@dataclass(frozen=True)
class Sequence:
    """Fire when events matching the steps arrive in order, per key, within ``within_ms``."""

    steps: tuple[Step, ...]
    within_ms: int
    by: tuple[str, ...]
    ordered: bool = True
    """False: every step within the time limit, in any order (Sigma's temporal)."""


@dataclass(frozen=True)
class Example:
    event: dict[str, Any]
    line: int


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    severity: str
    condition: Condition | None
    description: str = ""
    tags: tuple[str, ...] = ()
    enabled: bool = True
    threshold: Threshold | None = None
    sequence: Sequence | None = None
    suppress_ms: int | None = None
    """Repeats within this become one alert with a count (None: the engine's default)."""
    positive: tuple[Example, ...] = ()
    negative: tuple[Example, ...] = ()
    """Example event lists: ``examples.match`` fire the rule, ``examples.no_match`` not."""
    path: str = "<string>"
    line: int = 0

    @property
    def kind(self) -> str:
        return "threshold" if self.threshold else "sequence" if self.sequence else "event"

    def fingerprint(self) -> str:
        """What window state depends on: state carries over a reload when this is equal."""
        return repr((self.kind, self.condition, self.threshold, self.sequence))


@dataclass
class RuleSet:
    rules: list[Rule] = field(default_factory=list)
    lists: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    @property
    def enabled(self) -> list[Rule]:
        return [r for r in self.rules if r.enabled]


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


def parse_duration_ms(value: Any) -> int:
    """``"90s"``, ``"5m"``, ``"1h"``, ``250ms`` or a number of seconds, in milliseconds.

    >>> parse_duration_ms("5m"), parse_duration_ms(2), parse_duration_ms("250ms")
    (300000, 2000, 250)
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        return round(value * 1000)
    found = _DURATION.match(str(value))
    if not found:
        raise ValueError(f"{value!r} is not a duration (examples: 500ms, 60s, 10m, 1h)")
    return round(float(found.group(1)) * _UNITS_MS[found.group(2)])


def field_kind(name: str) -> str | None:
    """text, number, bool, or None for a field the events do not have."""
    if name in STRING_FIELDS or (
        name.startswith(MAP_PREFIXES) and len(name) > len(name.split(".", 1)[0]) + 1
    ):
        return "text"
    if name in NUMBER_FIELDS:
        return "number"
    if name in BOOL_FIELDS:
        return "bool"
    return None


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
            values = self._values(spec, line)
            return None if values is None else Match(name, "equals", values)
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
        elif kind == "number" and not all(isinstance(v, int | float) for v in values):
            self.error(line, f"{name} is a number field; {values!r} are not all numbers")
            return None
        return Match(name, op, values, nocase and kind == "text")

    def _number_op(self, name: str, op: str, values: tuple[Any, ...], line: int) -> Match | None:
        if len(values) != 1 or isinstance(values[0], bool):
            self.error(line, f"{name}: {op} takes one number")
            return None
        try:
            number = float(values[0])
        except (TypeError, ValueError):
            self.error(line, f"{name}: {op} takes a number, not {values[0]!r}")
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
        if not isinstance(value, int | float) or isinstance(value, bool):
            self.error(line, f"threshold.{aggregate}.{op} must be a number, not {value!r}")
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
