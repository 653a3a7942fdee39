"""The rule language's model: the fields and operators a condition may use, and the
checked rules the parser (``language.py``) builds and the compiler (``compiler.py``)
turns into code."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

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
        "actor.parent_process",
        "actor.parent_cmdline",
        "object_host",
        "text",
    )
)
"""Fields holding text. Two are derived: ``object_host``, the host of ``object`` (host:port,
URL), and ``text``, the event's text for keyword searches (Sigma's field-less ones): the
command line, the object and every attribute value, one per line."""
NUMBER_FIELDS = frozenset(
    ("ts", "seq", "bytes", "actor.uid", "actor.pid", "actor.ppid", "object_port")
)
BOOL_FIELDS = frozenset(("sandbox_known", "object_owned"))
"""``object_owned`` is derived: the object's host is one the sandbox's inventory lists as
its own (``labels.owned_destinations``, ``compiler.object_owned``)."""
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
