"""Audit event v2 as plain dicts: validation and normalisation of collector input.

A JSON object with the schema's field names becomes an event ready for Avro encoding:

>>> ev = normalize_event({"tenant": "acme", "sandbox_id": "sb-1", "category": "process",
...     "action": "exec", "ts": "2026-11-28T10:00:00Z", "actor": {"user": "ci", "pid": 42}},
...     now_ms=0)
>>> ev["ts"], ev["level"], ev["actor"]["pid"], ev["seq"]
(1795860000000, 'info', 42, None)
>>> normalize_event({"sandbox_id": "sb-1", "category": "process", "action": "exec"}, now_ms=0)
Traceback (most recent call last):
...
pipeline.schema.event.InvalidEvent: tenant: required
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, get_args

import msgspec
import orjson

from pipeline.schema.vocabulary import Category, Level

Outcome = Literal["success", "failure", "denied"]
CATEGORIES = frozenset(get_args(Category))
LEVELS: tuple[str, ...] = get_args(Level)
LEVEL_SET = frozenset(LEVELS)
OUTCOMES = frozenset(get_args(Outcome))
ACTOR_FIELDS = (
    "user",
    "uid",
    "pid",
    "ppid",
    "process",
    "cmdline",
    "parent_process",
    "parent_cmdline",
)
EVENT_FIELDS = frozenset(
    (
        "event_id",
        "ts",
        "tenant",
        "sandbox_id",
        "seq",
        "category",
        "action",
        "level",
        "outcome",
        "actor",
        "object",
        "bytes",
        "attributes",
        "prev_hash",
        "hash",
    )
)
MAX_LONG = 2**63 - 1
"""The largest value of an Avro long: integer fields above it cannot be encoded."""
MAX_UINT32 = 2**32 - 1
"""The largest uid, pid and ppid the events table stores (UInt32)."""
# Epoch milliseconds of 2001-09-09: a smaller ts is almost surely seconds, not milliseconds.
_MIN_PLAUSIBLE_MS = 1_000_000_000_000
_MAX_STRING = 64 * 1024
_MAX_ID = 256

Event = dict[str, Any]


class InvalidEvent(ValueError):
    """The input is not a valid audit event; the message names the field and the problem."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def normalize_event(obj: Any, *, now_ms: int) -> Event:
    """Validate one JSON object and return it as a schema-v2 event dict.

    A missing ``event_id`` gets a random UUID and a missing ``ts`` gets ``now_ms``; a
    missing ``seq`` stays None for the caller to assign (it is per sandbox).
    """
    if not isinstance(obj, dict):
        raise InvalidEvent("event", f"expected a JSON object, got {type(obj).__name__}")
    unknown = obj.keys() - EVENT_FIELDS
    if unknown:
        raise InvalidEvent(sorted(unknown)[0], "unknown field (put extra data in attributes)")
    event_id = obj.get("event_id")
    return {
        "event_id": _id("event_id", event_id) if event_id is not None else str(uuid.uuid4()),
        "ts": parse_ts(obj["ts"]) if obj.get("ts") is not None else now_ms,
        "tenant": _id("tenant", obj.get("tenant")),
        "sandbox_id": _id("sandbox_id", obj.get("sandbox_id")),
        "seq": _optional_int("seq", obj.get("seq"), minimum=1),
        "category": _choice("category", obj.get("category"), CATEGORIES, None),
        "action": _id("action", obj.get("action")),
        "level": _choice("level", obj.get("level"), LEVEL_SET, "info"),
        "outcome": _choice("outcome", obj.get("outcome"), OUTCOMES, "success"),
        "actor": _actor(obj.get("actor")),
        "object": _string("object", obj.get("object")),
        "bytes": _optional_int("bytes", obj.get("bytes"), minimum=0),
        "attributes": _attributes(obj.get("attributes")),
        "prev_hash": _hash("prev_hash", obj.get("prev_hash")),
        "hash": _hash("hash", obj.get("hash")),
    }


def parse_ts(value: Any) -> int:
    """Epoch milliseconds from an integer (ms) or an RFC 3339 string with an offset."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < _MIN_PLAUSIBLE_MS:
            raise InvalidEvent("ts", f"{value} looks like seconds; give epoch milliseconds")
        if value > MAX_LONG:
            raise InvalidEvent("ts", f"{value} is beyond the largest Avro long")
        return value
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidEvent("ts", f"{value!r} is not RFC 3339") from None
        if parsed.tzinfo is None:
            raise InvalidEvent("ts", f"{value!r} has no UTC offset (add Z or +00:00)")
        return int(parsed.timestamp() * 1000)
    raise InvalidEvent("ts", f"expected epoch milliseconds or RFC 3339, got {_kind(value)}")


def _id(field: str, value: Any) -> str:
    if value is None or value == "":
        raise InvalidEvent(field, "required")
    if not isinstance(value, str):
        raise InvalidEvent(field, f"expected a string, got {_kind(value)}")
    if len(value) > _MAX_ID:
        raise InvalidEvent(field, f"longer than {_MAX_ID} characters")
    return value


def _string(field: str, value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidEvent(field, f"expected a string, got {_kind(value)}")
    if len(value) > _MAX_STRING:
        raise InvalidEvent(field, f"longer than {_MAX_STRING} characters")
    return value


def _optional_int(field: str, value: Any, *, minimum: int, maximum: int = MAX_LONG) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidEvent(field, f"expected an integer, got {_kind(value)}")
    if value < minimum:
        raise InvalidEvent(field, f"must be >= {minimum}, got {value}")
    if value > MAX_LONG:
        raise InvalidEvent(field, f"{value} is beyond the largest Avro long")
    if value > maximum:
        raise InvalidEvent(field, f"{value} is beyond the largest value stored ({maximum})")
    return value


def _choice(field: str, value: Any, allowed: frozenset[str], default: str | None) -> str:
    if value is None and default is not None:
        return default
    if not isinstance(value, str) or value not in allowed:  # a list or object is no choice
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
        raise InvalidEvent(field, f"{shown} is not one of {', '.join(sorted(allowed))}")
    return value


def _actor(value: Any) -> dict[str, Any]:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise InvalidEvent("actor", f"expected an object, got {_kind(value)}")
    unknown = value.keys() - set(ACTOR_FIELDS)
    if unknown:
        raise InvalidEvent(f"actor.{sorted(unknown)[0]}", "unknown field")
    return {
        "user": _string("actor.user", value.get("user")),
        "uid": _optional_int("actor.uid", value.get("uid"), minimum=0, maximum=MAX_UINT32),
        "pid": _optional_int("actor.pid", value.get("pid"), minimum=0, maximum=MAX_UINT32),
        "ppid": _optional_int("actor.ppid", value.get("ppid"), minimum=0, maximum=MAX_UINT32),
        "process": _string("actor.process", value.get("process")),
        "cmdline": _string("actor.cmdline", value.get("cmdline")),
        "parent_process": _string("actor.parent_process", value.get("parent_process")),
        "parent_cmdline": _string("actor.parent_cmdline", value.get("parent_cmdline")),
    }


def _attributes(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidEvent("attributes", f"expected an object, got {_kind(value)}")
    out: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, str):
            out[key] = item
        elif item is None:
            continue
        else:  # numbers, booleans and nested values are kept as their JSON text
            out[key] = orjson.dumps(item).decode()
    return out


def _hash(field: str, value: Any) -> bytes | None:
    if value is None or value == "":
        return None
    if isinstance(value, bytes) and len(value) == 32:
        return value
    if isinstance(value, str) and len(value) == 64:
        try:
            return bytes.fromhex(value)
        except ValueError:
            pass
    raise InvalidEvent(field, "expected 64 hex digits (SHA-256)")


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def event_to_json(event: Event) -> dict[str, Any]:
    """The JSON form of an event (hashes as hex), the inverse of normalize_event."""
    out = dict(event)
    for field in ("prev_hash", "hash"):
        if out.get(field) is not None:
            out[field] = out[field].hex()
    return out


_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=_MAX_ID)]
_Text = Annotated[str, msgspec.Meta(max_length=_MAX_STRING)]
_Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_LONG)]
_Id32 = Annotated[int, msgspec.Meta(ge=0, le=MAX_UINT32)]


class _ActorIn(msgspec.Struct, forbid_unknown_fields=True):
    user: _Text | None = None
    uid: _Id32 | None = None
    pid: _Id32 | None = None
    ppid: _Id32 | None = None
    process: _Text | None = None
    cmdline: _Text | None = None
    parent_process: _Text | None = None
    parent_cmdline: _Text | None = None


class _EventIn(msgspec.Struct, forbid_unknown_fields=True):
    tenant: _Id
    sandbox_id: _Id
    category: Category
    action: _Id
    event_id: _Id | None = None
    ts: Annotated[int, msgspec.Meta(le=MAX_LONG)] | str | None = None
    seq: Annotated[int, msgspec.Meta(ge=1, le=MAX_LONG)] | None = None
    level: Level | None = None
    outcome: Outcome | None = None
    actor: _ActorIn | None = None
    object: _Text | None = None
    bytes: _Count | None = None
    attributes: dict[str, str] | None = None
    prev_hash: str | None = None
    hash: str | None = None


_decode_event = msgspec.json.Decoder(_EventIn).decode
_NO_ACTOR = _ActorIn()


def parse_event_line(line: bytes, *, now_ms: int) -> Event:
    """One JSON line to a schema-v2 event: `normalize_event(orjson.loads(line))`, with
    the common case (a well-typed event) parsed and checked in one pass by msgspec. A line
    it refuses goes the long way, which names the problem (or accepts what msgspec is
    stricter about, such as numbers among the attributes).

    >>> parse_event_line(b'{"tenant": "acme", "sandbox_id": "sb-1", "category": "api",'
    ...     b' "action": "call", "ts": 1795860000000}', now_ms=0)["level"]
    'info'
    """
    try:
        obj = _decode_event(line)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return normalize_event(orjson.loads(line), now_ms=now_ms)
    actor = obj.actor or _NO_ACTOR
    return {
        "event_id": obj.event_id or str(uuid.uuid4()),
        "ts": now_ms if obj.ts is None else parse_ts(obj.ts),
        "tenant": obj.tenant,
        "sandbox_id": obj.sandbox_id,
        "seq": obj.seq,
        "category": obj.category,
        "action": obj.action,
        "level": obj.level or "info",
        "outcome": obj.outcome or "success",
        "actor": {
            "user": actor.user or "",
            "uid": actor.uid,
            "pid": actor.pid,
            "ppid": actor.ppid,
            "process": actor.process or "",
            "cmdline": actor.cmdline or "",
            "parent_process": actor.parent_process or "",
            "parent_cmdline": actor.parent_cmdline or "",
        },
        "object": obj.object or "",
        "bytes": obj.bytes,
        "attributes": obj.attributes or {},
        "prev_hash": _hash("prev_hash", obj.prev_hash),
        "hash": _hash("hash", obj.hash),
    }
