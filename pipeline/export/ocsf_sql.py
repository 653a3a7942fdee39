"""The OCSF records of ``pipeline/siem/ocsf.py`` computed by ClickHouse, so that
``auditpipe export --format ocsf-parquet`` streams Parquet that ClickHouse writes itself
(the rows never become Python objects).

One SELECT per OCSF class (a Parquet file has one schema; Security Lake wants one source
per class): an inner query reads the range and computes the helpers (the event's class,
its object parsed as an endpoint), the outer one builds the record, every object a named
``Tuple`` (a Parquet struct) whose absent attributes are NULL.

Invariants:
- the tables are ocsf.py's (``CLASSES``, ``ACTIVITIES``, severities, ATT&CK tactics),
  read when the SQL is built, so the two cannot drift on them; the logic is held equal by
  tests/export/test_ocsf_sql.py, which shapes the same stored rows both ways and compares
  the records (an absent attribute, a NULL and an empty object or list count alike);
- nothing a tenant sent becomes SQL text: the range and the tenant are bound parameters,
  every literal here is ours (``literal`` escapes them all the same);
- ClickHouse has no Nullable(Tuple): an object that is absent in ocsf.py is a tuple of
  NULLs here, which Parquet readers (Athena, Spark, pyarrow) read as an empty struct.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pipeline.schema.sql import ENDPOINT_STEPS, literal
from pipeline.siem.common import ALERT_SEVERITY, LEVEL_SEVERITY, SEVERITY_NAMES, TACTICS
from pipeline.siem.ocsf import ACTIVITIES, CLASSES, OCSF_VERSION, product

S, N_S = "String", "Nullable(String)"
N_U32, N_U64, U64, U8 = "Nullable(UInt32)", "Nullable(UInt64)", "UInt64", "UInt8"

Typed = tuple[str, str]
"""(ClickHouse type, expression)."""


def array(values: Iterable[str | int]) -> str:
    return "[" + ", ".join(literal(v) for v in values) + "]"


def struct(**fields: Typed) -> Typed:
    """A named tuple (a Parquet struct) of typed expressions."""
    kind = "Tuple(" + ", ".join(f"`{name}` {t}" for name, (t, _) in fields.items()) + ")"
    values = ", ".join(expr for _, expr in fields.values())
    return kind, f"CAST(tuple({values}), {literal(kind)})"


def when(condition: str, typed: Typed) -> Typed:
    """``typed`` where ``condition`` holds, else NULL (each field of a struct)."""
    kind, expr = typed
    if kind.startswith("Tuple("):
        raise ValueError("wrap the struct's fields, not the struct")
    nullable = kind if kind.startswith("Nullable(") else f"Nullable({kind})"
    return nullable, f"if({condition}, {expr}, NULL)"


def _table(mapping: dict[str, tuple[int, str]], value: str, default: str) -> tuple[str, str]:
    if not mapping:
        return "99", default
    keys = array(mapping)
    ids = array(v[0] for v in mapping.values())
    names = array(v[1] for v in mapping.values())
    return (
        f"transform({value}, {keys}, {ids}, 99)",
        f"transform({value}, {keys}, {names}, {default})",
    )


def basename(path: str) -> str:
    """posixpath.basename: what follows the last ``/`` (``(?s)``: a name may hold a
    newline)."""
    return f"replaceRegexpOne({path}, '(?s)^.*/', '')"


def file_object(path: str, present: str = "1") -> Typed:
    """ocsf._file(path): name (the basename without trailing slashes, else the path)."""
    stripped = basename(f"replaceRegexpOne({path}, '/+$', '')")
    return struct(
        name=when(present, (S, f"if({stripped} = '', {path}, {stripped})")),
        path=when(present, (S, path)),
        type_id=when(present, (U8, "0")),
    )


def user(condition: str = "1") -> Typed:
    """ocsf._user over the actor columns, NULL where ``condition`` fails."""
    return struct(
        name=when(condition, (N_S, "nullIf(toString(actor_user), '')")),
        uid=when(condition, (N_S, "if(actor_uid IS NULL, NULL, toString(actor_uid))")),
    )


ACTOR_EMPTY = "(actor_pid IS NULL AND actor_user = '' AND actor_uid IS NULL)"
KNOWN = "actor_pid IS NOT NULL"


def process(path: str | None = None) -> Typed:
    """ocsf._process(actor, path), or where the pid is unknown and a ``path`` is given,
    ocsf._unknown_process (``uid`` "unknown", name and file from the path)."""
    own = "nullIf(toString(actor_process), '')"
    fields: dict[str, Typed] = {}
    if path is not None:
        named = f"nullIf({basename(path)}, '')"
        unknown_name = f"if({path} = '', NULL, if({basename(path)} = '', {path}, {basename(path)}))"
        fields["uid"] = (N_S, f"if({KNOWN}, NULL, 'unknown')")
        fields["pid"] = (N_U32, "actor_pid")
        name = f"if({KNOWN}, coalesce({own}, if({path} = '', NULL, {named})), {unknown_name})"
        fields["name"] = (N_S, name)
    else:
        fields["pid"] = (N_U32, "actor_pid")
        fields["name"] = when(KNOWN, (N_S, own))
    fields["cmd_line"] = when(KNOWN, (N_S, "nullIf(actor_cmdline, '')"))
    if path is not None:
        fields["file"] = file_object(path, f"{path} != ''")
    fields["parent_process"] = parent_process()
    fields["user"] = user(KNOWN)
    return struct(**fields)


def parent_process() -> Typed:
    """ocsf._parent, where the process and its parent's pid are known."""
    known = f"{KNOWN} AND actor_ppid IS NOT NULL"
    path = "toString(actor_parent_process)"
    named = f"{known} AND {path} != ''"
    stripped = basename(f"replaceRegexpOne({path}, '/+$', '')")
    return struct(
        pid=when(KNOWN, (N_U32, "actor_ppid")),
        name=when(named, (S, f"if({stripped} = '', {path}, {stripped})")),
        path=when(named, (S, path)),
        cmd_line=when(f"{known} AND actor_parent_cmdline != ''", (S, "actor_parent_cmdline")),
    )


def actor(sandbox_when_empty: bool) -> Typed:
    """ocsf._actor; with ``sandbox_when_empty``, the sandbox as the acting app when no
    process or user is known (the classes that always set an actor)."""
    fields: dict[str, Typed] = {"process": process(), "user": user()}
    if sandbox_when_empty:
        fields["app_name"] = when(ACTOR_EMPTY, (S, "'sandbox'"))
        fields["app_uid"] = when(ACTOR_EMPTY, (S, "sandbox_id"))
    return struct(**fields)


ENDPOINT_HELPERS = {
    **ENDPOINT_STEPS,
    "ep_port_ok": "match(ep_port, '^0*[0-9]{1,5}$') AND toUInt32OrZero(ep_port) < 65536",
    "ep_is_ip": "isIPv4String(ep_host) OR isIPv6String(ep_host)",
}
"""ocsf.endpoint over the object, step by step (inner-query columns)."""


def endpoint(present: str) -> Typed:
    return struct(
        ip=when(f"{present} AND ep_host != '' AND ep_is_ip", (S, "ep_host")),
        hostname=when(f"{present} AND ep_host != '' AND NOT ep_is_ip", (S, "ep_host")),
        port=when(f"{present} AND ep_port_ok", (N_U32, "toUInt32OrZero(ep_port)")),
        name=when(f"{present} AND ep_host = ''", (S, "object")),
    )


def _hex(column: str) -> Typed:
    return (
        N_S,
        f"if({column} IS NULL OR hex({column}) = repeat('0', 64), NULL, lower(hex({column})))",
    )


def metadata(uid: str, log_name: str, sequence: str) -> Typed:
    ours = product()
    return struct(
        version=(S, literal(OCSF_VERSION)),
        product=struct(**{k: (S, literal(v)) for k, v in ours.items()}),
        log_name=(S, literal(log_name)),
        profiles=("Array(String)", "['host']"),
        uid=(N_S, f"nullIf({uid}, '')"),
        tenant_uid=(N_S, "nullIf(toString(tenant), '')"),
        sequence=(N_U64, sequence),
    )


DEVICE = struct(
    type_id=(U8, "6"), type=(S, "'Virtual'"), uid=(S, "sandbox_id"), name=(S, "sandbox_id")
)


def severity_name(severity_id: str, default: str) -> str:
    names = array(SEVERITY_NAMES.values())
    return f"transform({severity_id}, {array(SEVERITY_NAMES)}, {names}, {default})"


PROCESS_ACTIONS = array(ACTIVITIES[1007])


def class_expr() -> str:
    """The event's class_uid (ocsf.event: a permission change of a process's ids is
    Process Activity)."""
    categories = {k: v[0] for k, v in CLASSES.items()}
    return (
        f"multiIf(cat = 'permission' AND action IN {PROCESS_ACTIONS}, 1007, "
        f"transform(cat, {array(categories)}, {array(categories.values())}, 0))"
    )


def event_fields(class_uid: int) -> dict[str, Typed]:
    """The record of one event of class ``class_uid`` (ocsf.event)."""
    name = next((n for u, n in CLASSES.values() if u == class_uid), "Base Event")
    activity_id, activity_name = _table(
        ACTIVITIES[class_uid], "action", "if(action = '', 'Other', toString(action))"
    )
    if class_uid == 1001:  # a permission change without its own activity: Set Security
        other = f"cat = 'permission' AND {activity_id} = 99"
        activity_id = f"if({other}, 7, {activity_id})"
        activity_name = f"if({other}, 'Set Security', {activity_name})"
    severity = (
        f"transform(toString(level), {array(LEVEL_SEVERITY)}, {array(LEVEL_SEVERITY.values())}, 1)"
    )
    fields: dict[str, Typed] = {
        "class_uid": ("UInt32", str(class_uid)),
        "class_name": (S, literal(name)),
        "category_uid": ("UInt32", str(class_uid // 1000)),
        "activity_id": ("UInt32", activity_id),
        "activity_name": (S, activity_name),
        "type_uid": ("UInt32", f"{class_uid * 100} + {activity_id}"),
        "severity_id": ("UInt32", severity),
        "severity": (S, severity_name(severity, "'Unknown'")),
        "time": ("Int64", "toUnixTimestamp64Milli(ts)"),
        "message": (
            S,
            "arrayStringConcat(arrayFilter(x -> x != '', [cat, toString(action), object]), ' ')",
        ),
        "metadata": metadata("event_id", "audit.events", "seq"),
        "device": DEVICE,
        "unmapped": struct(
            auditpipe=struct(
                category=(S, "cat"),
                action=(N_S, "nullIf(toString(action), '')"),
                level=(S, "toString(level)"),
                bytes=(N_U64, "bytes"),
                prev_hash=_hex("prev_hash"),
                hash=_hex("hash"),
                attributes=("Map(String, String)", "CAST(attributes, 'Map(String, String)')"),
            )
        ),
        "status_id": (
            "UInt32",
            "transform(toString(outcome), ['success', 'failure', 'denied'], [1, 2, 2], 0)",
        ),
        "status": (
            S,
            "transform(toString(outcome), ['success', 'failure', 'denied'], "
            "['Success', 'Failure', 'Failure'], '')",
        ),
        "status_detail": (N_S, "if(toString(outcome) = 'denied', 'denied', NULL)"),
    }
    fields.update(_class_fields(class_uid))
    return fields


def _class_fields(class_uid: int) -> dict[str, Typed]:
    """The class's own objects (ocsf._SHAPERS)."""
    has_object = "object != ''"
    if class_uid == 1007:
        parent = when("ifNull(actor_ppid, 0) != 0", (N_U32, "actor_ppid"))
        empty = "(ifNull(actor_ppid, 0) = 0 AND actor_user = '' AND actor_uid IS NULL)"
        return {
            "process": process("object"),
            "actor": struct(
                process=struct(pid=parent),
                user=user(),
                app_name=when(empty, (S, "'sandbox'")),
                app_uid=when(empty, (S, "sandbox_id")),
            ),
        }
    if class_uid == 1001:
        return {"file": file_object("if(object = '', 'unknown', object)"), "actor": actor(True)}
    if class_uid == 4001:
        traffic = when("ifNull(bytes, 0) != 0", (N_U64, "bytes"))
        return {
            "dst_endpoint": endpoint("1"),
            "actor": actor(False),
            "traffic": struct(bytes_out=traffic, bytes=traffic),
        }
    if class_uid == 3002:
        name = (
            "multiIf(attributes['user'] != '', attributes['user'], attributes['account'] != '', "
            "attributes['account'], actor_user != '', toString(actor_user), 'unknown')"
        )
        return {
            "user": struct(name=(S, name)),
            "service": struct(name=(S, "if(object = '', 'unknown', object)")),
            "dst_endpoint": endpoint(has_object),
            "actor": actor(True),
        }
    if class_uid == 6003:
        return {
            "api": struct(operation=(S, "toString(action)"), service=struct(name=(S, "object"))),
            "actor": actor(True),
            "src_endpoint": struct(name=(S, "sandbox_id")),
        }
    if class_uid == 5019:
        return {"actor": actor(True)}
    if class_uid == 6002:
        return {"app": struct(name=(S, "'sandbox'"), uid=(S, "sandbox_id"))}
    return {"actor": actor(False)}


def event_classes() -> list[int]:
    return sorted({uid for uid, _ in CLASSES.values()})


def select(fields: dict[str, Typed]) -> str:
    return ",\n  ".join(f"{expr} AS `{name}`" for name, (_, expr) in fields.items())


def events_sql(database: str, class_uid: int, where: str) -> str:
    """The OCSF records of the events of ``class_uid`` that match ``where`` (over the
    events table's columns, with bound parameters), in the table's order."""
    helpers = ", ".join(f"{expr} AS {name}" for name, expr in ENDPOINT_HELPERS.items())
    inner = f"SELECT *, toString(category) AS cat, {helpers} FROM {database}.events WHERE {where}"
    return (
        f"SELECT {select(event_fields(class_uid))}\n"
        f"FROM ({inner}) WHERE {class_expr()} = {class_uid} "
        "ORDER BY tenant, sandbox_id, ts, seq"
    )


def event_keys_sql(database: str, class_uid: int, where: str) -> str:
    """The sort keys of the events of ``class_uid`` that match ``where``."""
    return (
        f"SELECT tenant, sandbox_id, ts, seq FROM (SELECT tenant, sandbox_id, ts, seq, "
        f"action, toString(category) AS cat FROM {database}.events WHERE {where}) "
        f"WHERE {class_expr()} = {class_uid}"
    )


def classes_sql(database: str, where: str) -> str:
    """Rows per (class_uid, event day) of the range: the export's plan."""
    return (
        f"SELECT {class_expr()} AS class_uid, toYYYYMMDD(ts) AS day, count() "
        f"FROM (SELECT *, toString(category) AS cat FROM {database}.events WHERE {where}) "
        "GROUP BY class_uid, day ORDER BY class_uid, day"
    )


def alert_fields() -> dict[str, Typed]:
    """ocsf.alert: the alert as a Detection Finding (2004)."""
    severity = f"transform(sev, {array(ALERT_SEVERITY)}, {array(ALERT_SEVERITY.values())}, 99)"
    first, last = "toUnixTimestamp64Milli(first_ts)", "toUnixTimestamp64Milli(last_ts)"
    title = "if(title = '', toString(rule_id), toString(title))"
    rule = (S, "toString(rule_id)")
    finding = struct(
        uid=(S, "toString(alert_id)"),
        title=(S, title),
        analytic=struct(uid=rule, name=rule, type_id=(U8, "1"), type=(S, "'Rule'")),
        first_seen_time=("Int64", first),
        last_seen_time=("Int64", last),
        related_events=(
            "Array(Tuple(uid String))",
            "arrayMap(x -> CAST(tuple(x), 'Tuple(uid String)'), evidence)",
        ),
        related_events_count=("UInt64", "length(evidence)"),
        tags=(
            "Array(Tuple(name String, value String))",
            "arrayMap(x -> CAST(tuple('tag', toString(x)), "
            "'Tuple(name String, value String)'), tags)",
        ),
        attacks=_attacks(),
    )
    return {
        "class_uid": ("UInt32", "2004"),
        "class_name": (S, "'Detection Finding'"),
        "category_uid": ("UInt32", "2"),
        "activity_id": ("UInt32", "1"),
        "activity_name": (S, "'Create'"),
        "type_uid": ("UInt32", "200401"),
        "severity_id": ("UInt32", severity),
        "severity": (S, severity_name(severity, "if(sev = '', 'Other', sev)")),
        "time": ("Int64", last),
        "start_time": ("Int64", first),
        "end_time": ("Int64", last),
        "count": (U64, "if(hits = 0, 1, hits)"),
        "is_alert": ("Bool", "true"),
        "status_id": ("UInt32", "1"),
        "status": (S, "'New'"),
        "message": (S, title),
        "metadata": metadata("toString(alert_id)", "audit.alerts", "NULL"),
        "device": DEVICE,
        "finding_info": finding,
    }


ATTACK = (
    "Tuple(technique Tuple(uid Nullable(String)), sub_technique Tuple(uid Nullable(String)), "
    "tactic Tuple(uid Nullable(String), name Nullable(String)))"
)


def _attacks() -> Typed:
    """common.techniques / tactics and ocsf._attacks: each technique tag (with the
    first tactic tag), or, without one, each tactic tag alone."""
    technique = r"extract(lower(toString(t)), '^attack\\.(t[0-9]{4}(?:\\.[0-9]{3})?)$')"
    keys = array(f"attack.{name}" for name in TACTICS)
    ids, names = array(v[0] for v in TACTICS.values()), array(v[1] for v in TACTICS.values())
    found = f"arrayDistinct(arrayFilter(t -> t != '', arrayMap(t -> upper({technique}), tags)))"
    tactic_ids = (
        "arrayDistinct(arrayFilter(t -> t != '', "
        f"arrayMap(t -> transform(lower(toString(t)), {keys}, {ids}, ''), tags)))"
    )
    first = f"if(empty({tactic_ids}), NULL, {tactic_ids}[1])"
    first_name = f"if(empty({tactic_ids}), NULL, transform({tactic_ids}[1], {ids}, {names}, ''))"
    with_technique = (
        "arrayMap(t -> CAST(tuple(tuple(substring(t, 1, 5)), "
        f"tuple(if(length(t) > 5, t, NULL)), tuple({first}, {first_name})), {literal(ATTACK)}), "
        f"{found})"
    )
    tactics_only = (
        "arrayMap(t -> CAST(tuple(tuple(NULL), tuple(NULL), "
        f"tuple(t, transform(t, {ids}, {names}, ''))), {literal(ATTACK)}), {tactic_ids})"
    )
    return f"Array({ATTACK})", f"if(empty({found}), {tactics_only}, {with_technique})"


def alerts_sql(database: str, where: str) -> str:
    return (
        f"SELECT {select(alert_fields())}\nFROM (SELECT *, toString(severity) AS sev, "
        f"count AS hits FROM {database}.alerts WHERE {where}) "
        "ORDER BY tenant, sandbox_id, first_ts, alert_id"
    )


def slice_starts_sql(table_sql: str, key: Sequence[str], every: int) -> str:
    """The key of every ``every``-th row of ``table_sql`` in key order (the first rows of
    the files a large partition is cut into)."""
    keys = ", ".join(key)
    return (
        f"SELECT {keys} FROM (SELECT {keys}, row_number() OVER (ORDER BY {keys}) AS rn "
        f"FROM ({table_sql})) WHERE (rn - 1) % {int(every)} = 0 ORDER BY {keys}"
    )
