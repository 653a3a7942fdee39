"""Rules compiled to ClickHouse SQL over the stored events (``auditpipe hunt``): the same
conditions, thresholds and sequences the engine (``engine.py``) evaluates on the stream,
evaluated over history.

A condition becomes a boolean expression over the events table's columns, with the
engine's semantics (``compiler.py``):
- a missing value is text ``""`` and a number that compares false (NULL comparisons are
  wrapped in ``ifNull(.., 0)``, so ``not`` of one is true, as NaN's is in Python);
- ``attributes.K`` / ``labels.K`` exist only where the map has the key;
- ``nocase`` compares lower-cased text (``lowerUTF8``), and a ``nocase`` regex matches
  case-insensitively; regexes run on ClickHouse's RE2, which has no look-around or
  back-reference: a rule that needs one is refused by name (:class:`Unsupported`);
- ``object_host`` / ``object_port`` are the object's host and port, parsed as
  ``compiler._split_host`` does.

A threshold becomes a window function over each key's matching events, ordered by time
(``RANGE BETWEEN window PRECEDING AND CURRENT ROW``: the engine's window that ends at each
event); a sequence becomes ``windowFunnel`` per key and join value (ordered) or, for
``ordered: false``, a forward window in which every step occurs. Counts add the stored
``repeat_count``: the collapse stage stores a run of identical events as one row, and
the engine counted each of them.

Invariants: every literal of a rule goes through ``schema/sql.literal`` (a rule may come from a
Sigma file off the internet); the range and the tenant are bound parameters of the
caller's ``where``; a key is text with the tenant first, as ``engine.key_getter`` makes it.
"""

from __future__ import annotations

from pipeline.rules.compiler import OWNED_LABEL
from pipeline.rules.model import All, AnyOf, Condition, Match, Not, Rule, field_kind
from pipeline.schema.sql import inline, literal

_COLUMNS = {
    "actor.user": "actor_user",
    "actor.process": "actor_process",
    "actor.cmdline": "actor_cmdline",
    "actor.parent_process": "actor_parent_process",
    "actor.parent_cmdline": "actor_parent_cmdline",
    "actor.uid": "actor_uid",
    "actor.pid": "actor_pid",
    "actor.ppid": "actor_ppid",
}
_NULLABLE = {"actor_uid", "actor_pid", "actor_ppid", "bytes", "prev_hash", "hash"}
_HOST = inline("ep_host")
"""compiler._split_host's host (``schema/sql.py``)."""
_PORT_TEXT = inline("ep_port")
_OWNED_HOST = f"lowerUTF8({_HOST})"
_OWNED = (
    f"arrayExists(d -> d != '' AND (d = {_OWNED_HOST} OR (startsWith(d, '.') AND "
    f"endsWith({_OWNED_HOST}, d))), arrayMap(x -> lowerUTF8(replaceRegexpAll(x, "
    f"'^[ \\t\\n\\r\\f]+|[ \\t\\n\\r\\f]+$', '')), "
    f"splitByChar(',', labels[{literal(OWNED_LABEL)}])))"
)
"""compiler.object_owned: any listed destination (trimmed, lower case) is the object's
host, or a leading-dot domain it ends with."""
_PORT = f"if(match({_PORT_TEXT}, '^[0-9]+$'), toUInt64OrNull({_PORT_TEXT}), NULL)"


class Unsupported(ValueError):
    """A rule ClickHouse cannot evaluate as the engine does (the message names why)."""


def raw(name: str) -> str:
    """A field's value, NULL where the engine's would be None."""
    if name == "text":  # compiler.all_text
        return (
            "arrayStringConcat(arrayFilter(x -> x != '', "
            "arrayConcat([actor_cmdline, object], mapValues(attributes))), '\\n')"
        )
    if name == "object_host":
        return _HOST
    if name == "object_port":
        return _PORT
    if name == "object_owned":
        return _OWNED
    for prefix in ("attributes", "labels"):
        if name.startswith(prefix + "."):
            key = literal(name[len(prefix) + 1 :])
            return f"if(mapContains({prefix}, {key}), {prefix}[{key}], NULL)"
    if name == "ts":
        return "toUnixTimestamp64Milli(ts)"
    if name in ("prev_hash", "hash"):
        return f"if({name} IS NULL, NULL, lower(hex({name})))"
    column = _COLUMNS.get(name, name)
    kind = field_kind(name)
    return f"toString({column})" if kind == "text" else column


def text(name: str) -> str:
    """A field as text, "" for a missing value (the engine's ``_text``)."""
    return f"ifNull(toString({raw(name)}), '')"


def condition(cond: Condition, rule: Rule | None = None) -> str:
    if isinstance(cond, All):
        return "(" + " AND ".join(condition(c, rule) for c in cond.items) + ")"
    if isinstance(cond, AnyOf):
        return "(" + " OR ".join(condition(c, rule) for c in cond.items) + ")"
    if isinstance(cond, Not):
        return f"(NOT {condition(cond.item, rule)})"
    return _match(cond, rule)


def _exists(name: str) -> str:
    column = _COLUMNS.get(name, name)
    if name.startswith(("attributes.", "labels.")) or name == "object_port":
        return f"({raw(name)} IS NOT NULL)"
    if column in _NULLABLE:
        return f"({column} IS NOT NULL)"
    return "1"  # a stored column always has a value ("" for text)


def _match(m: Match, rule: Rule | None) -> str:
    kind = field_kind(m.field)
    if m.op == "exists":
        found = _exists(m.field)
        return found if m.values[0] else f"(NOT {found})"
    if m.op in ("gt", "gte", "lt", "lte"):
        symbol = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[m.op]
        number = f"toFloat64OrNull(toString({raw(m.field)}))"
        return f"ifNull({number} {symbol} {literal(float(m.values[0]))}, 0)"
    if m.op == "cidr":
        host = text(m.field)
        nets = " OR ".join(f"isIPAddressInRange({host}, {literal(n)})" for n in m.values)
        return f"if(isIPv4String({host}) OR isIPv6String({host}), {nets}, 0)"
    if kind != "text":
        listed = ", ".join(literal(v) for v in m.values)
        return f"ifNull({raw(m.field)} IN ({listed}), 0)"
    if m.op == "regex":
        flags = "(?i)" if m.nocase else ""
        tests = [f"match({text(m.field)}, {literal(flags + _re2(p, rule))})" for p in m.values]
        return "(" + " OR ".join(tests) + ")"
    subject = f"lowerUTF8({text(m.field)})" if m.nocase else text(m.field)
    values = [str(v).lower() for v in m.values] if m.nocase else [str(v) for v in m.values]
    return _text_match(m.op, subject, values)


def _text_match(op: str, value: str, values: list[str]) -> str:
    if op == "equals":
        return f"({value} IN ({', '.join(literal(v) for v in values)}))"
    if op in ("contains", "contains_all"):
        joined = " OR " if op == "contains" else " AND "
        return "(" + joined.join(f"(position({value}, {literal(v)}) > 0)" for v in values) + ")"
    function = "startsWith" if op == "startswith" else "endsWith"
    return "(" + " OR ".join(f"{function}({value}, {literal(v)})" for v in values) + ")"


_PYTHON_ONLY = ("(?=", "(?!", "(?<=", "(?<!", "(?P=", "(?#")


def _re2(pattern: str, rule: Rule | None) -> str:
    """The pattern, refused where RE2 cannot run it as Python's ``re`` does."""
    for construct in _PYTHON_ONLY:
        if construct in pattern:
            raise Unsupported(_name(rule, f"regex {pattern!r} uses {construct}...) (not in RE2)"))
    for i in range(1, 10):
        if f"\\{i}" in pattern:
            raise Unsupported(_name(rule, f"regex {pattern!r} uses a back-reference (not in RE2)"))
    return pattern


def _name(rule: Rule | None, message: str) -> str:
    return f"{rule.id}: {message}" if rule else message


# -- whole rules -------------------------------------------------------------------------

MAX_EVIDENCE = 20


def _keys(by: tuple[str, ...]) -> list[str]:
    """engine.key_getter: the tenant first, then the ``by`` fields, as text."""
    fields = by if by[:1] == ("tenant",) else ("tenant", *by)
    return [text(f) for f in fields]


def event_sql(rule: Rule, table: str, where: str) -> str:
    """The events a single-event rule matches, one row each: (tenant, sandbox_id, ts ms,
    event_id, repeat_count), in time order."""
    assert rule.condition is not None
    return (
        "SELECT toString(tenant) AS k0, toString(sandbox_id) AS sb, "
        "toUnixTimestamp64Milli(ts) AS t, event_id, repeat_count "
        f"FROM {table} WHERE ({where}) AND {condition(rule.condition, rule)} "
        "ORDER BY t, k0, sb, seq"
    )


def hunt_sql(rule: Rule, table: str, where: str) -> str:
    """The rule's hits over ``table`` under ``where``, one row per hit: (tenant,
    sandbox_id, first ts, last ts, events, evidence ids, value). A single-event rule has
    one hit per sandbox (its matching events, as suppression would merge them), a
    threshold or sequence rule one per key that fired."""
    if rule.threshold is not None:
        return threshold_sql(rule, table, where)
    if rule.sequence is not None:
        return sequence_sql(rule, table, where)
    return (
        f"SELECT k0, sb, min(t), max(t), sum(repeat_count), "
        f"groupArray({MAX_EVIDENCE})(event_id), 0 FROM ({event_sql(rule, table, where)}) "
        "GROUP BY k0, sb ORDER BY min(t)"
    )


def threshold_sql(rule: Rule, table: str, where: str) -> str:
    """Per key that passed the threshold: (tenant, sandbox_id, first ts, last ts, events,
    evidence, best value). ``first``/``last`` span the windows that passed."""
    spec = rule.threshold
    assert spec is not None and rule.condition is not None
    keys = _keys(spec.by)
    names = [f"k{i}" for i in range(len(keys))]
    if spec.aggregate == "count":
        value, aggregate = "repeat_count", "sum(v)"
    elif spec.aggregate == "sum":  # engine: _num of the value, a non-finite one adds 0
        assert spec.field is not None
        number = f"ifNull(toFloat64OrNull(toString({raw(spec.field)})), 0)"
        value, aggregate = f"if(isFinite({number}), {number}, 0) * repeat_count", "sum(v)"
    else:
        assert spec.field is not None
        value, aggregate = f"tuple({raw(spec.field)})", "uniqExact(v)"
    symbol = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[spec.op]
    inner = (
        f"SELECT {', '.join(f'{k} AS {n}' for k, n in zip(keys, names, strict=True))}, "
        f"toString(sandbox_id) AS sb, toUnixTimestamp64Milli(ts) AS t, event_id, {value} AS v "
        f"FROM {table} WHERE ({where}) AND {condition(rule.condition, rule)}"
    )
    window = (
        f"PARTITION BY {', '.join(names)} ORDER BY t "
        f"RANGE BETWEEN {int(spec.window_ms)} PRECEDING AND CURRENT ROW"
    )
    scored = (
        f"SELECT {', '.join(names)}, sb, t, event_id, {aggregate} OVER w AS value, "
        f"min(t) OVER w AS start FROM ({inner}) WINDOW w AS ({window})"
    )
    return (
        f"SELECT k0, any(sb), min(start), max(t), count(), "
        f"groupArray({MAX_EVIDENCE})(event_id), max(value) FROM ({scored}) "
        f"WHERE value {symbol} {literal(float(spec.value))} GROUP BY {', '.join(names)} "
        "ORDER BY min(start)"
    )


def sequence_sql(rule: Rule, table: str, where: str) -> str:
    """Per key (and join value) whose steps completed: (tenant, sandbox_id, first ts, last
    ts, step events, evidence, steps). ``first``/``last`` span the key's step events."""
    seq = rule.sequence
    assert seq is not None
    keys = _keys(seq.by)
    names = [f"k{i}" for i in range(len(keys))]
    steps = [
        f"tuple({condition(step.condition, rule)}, {i}, "
        f"{text(step.join) if step.join else literal('')})"
        for i, step in enumerate(seq.steps)
    ]
    inner = (
        f"SELECT {', '.join(f'{k} AS {n}' for k, n in zip(keys, names, strict=True))}, "
        "toString(sandbox_id) AS sb, toUnixTimestamp64Milli(ts) AS t, event_id, "
        f"arrayJoin(arrayFilter(x -> x.1, [{', '.join(steps)}])) AS hit "
        f"FROM {table} WHERE ({where})"
    )
    group = [*names, "hit.3"]
    n = len(seq.steps)
    if seq.ordered:
        funnel = ", ".join(f"hit.2 = {i}" for i in range(n))
        return (
            f"SELECT k0, any(sb), min(t), max(t), count(), groupArray({MAX_EVIDENCE})(event_id), "
            f"windowFunnel({int(seq.within_ms)})(toUInt64(t), {funnel}) AS steps "
            f"FROM ({inner}) GROUP BY {', '.join(group)} HAVING steps = {n} ORDER BY min(t)"
        )
    window = (
        f"PARTITION BY {', '.join(group)} ORDER BY t "
        f"RANGE BETWEEN CURRENT ROW AND {int(seq.within_ms)} FOLLOWING"
    )
    seen = " AND ".join(f"max(hit.2 = {i}) OVER w" for i in range(n))
    scored = (
        f"SELECT {', '.join(names)}, hit.3 AS j, sb, t, event_id, {seen} AS complete "
        f"FROM ({inner}) WINDOW w AS ({window})"
    )
    return (
        f"SELECT k0, any(sb), min(t), max(t), count(), groupArray({MAX_EVIDENCE})(event_id), "
        f"{n} FROM ({scored}) GROUP BY {', '.join(names)}, j HAVING max(complete) "
        "ORDER BY min(t)"
    )
