"""What the SIEM destinations send: ``Item``, one alert or one audit event with what every
destination's framing needs, and its record in the configured format
(``forward.destinations[].format``): OCSF, ECS, CEF or auditpipe's own.

An event reaches an ``Item`` only after the forwarder validated and redacted it (the
worker's own stages): no destination ever sees what the store would not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pipeline.rules.alerts import Alert
from pipeline.siem import cef, ecs, ocsf

ItemKind = Literal["alert", "event"]


@dataclass(frozen=True, slots=True)
class Item:
    kind: ItemKind
    record: dict[str, Any]
    """The alert's record (schema ``alert``), or the event (hashes in hex)."""
    uid: str
    tenant: str
    sandbox_id: str
    ts_ms: int
    """The alert's last event time, or the event's time."""
    label: str
    """The rule id, or ``category:action`` (syslog MSGID)."""
    severity: str
    """The alert's severity (low .. critical), or the event's level (debug .. critical)."""
    key: bytes
    """tenant/sandbox: one sandbox's records stay in order on one Kafka partition."""
    fields: dict[str, str] = field(default_factory=dict)
    """Indexed fields (Splunk HEC ``fields``) a search filters on cheaply."""


def from_alert(alert: Alert) -> Item:
    return Item(
        "alert",
        alert.record(),
        alert.alert_id,
        alert.tenant,
        alert.sandbox_id,
        alert.last_ts,
        alert.rule_id,
        alert.severity,
        alert.key,
        {"tenant": alert.tenant, "rule_id": alert.rule_id, "severity": alert.severity},
    )


def from_event(event: dict[str, Any]) -> Item:
    """``event``, validated and redacted, without its Kafka provenance."""
    record = {k: v for k, v in event.items() if not k.startswith("kafka_")}
    for name in ("prev_hash", "hash"):
        value = record.get(name)
        if isinstance(value, bytes | bytearray):
            record[name] = value.hex()
    tenant, sandbox = str(record["tenant"]), str(record["sandbox_id"])
    category, action = str(record["category"]), str(record.get("action") or "")
    level = str(record.get("level") or "info")
    return Item(
        "event",
        record,
        str(record["event_id"]),
        tenant,
        sandbox,
        int(record["ts"]),
        f"{category}:{action}",
        level,
        f"{tenant}/{sandbox}".encode(),
        {"tenant": tenant, "category": category, "action": action, "level": level},
    )


Shape = Callable[[Item], Any]

_SHAPES: dict[tuple[ItemKind, str], Callable[[dict[str, Any]], Any]] = {
    ("alert", "ocsf"): ocsf.alert,
    ("alert", "ecs"): ecs.alert,
    ("alert", "cef"): cef.alert,
    ("alert", "native"): lambda record: record,
    ("event", "ocsf"): ocsf.event,
    ("event", "ecs"): ecs.event,
    ("event", "cef"): cef.event,
    ("event", "native"): lambda record: record,
}


def shape_for(format_name: str) -> Shape:
    """The function that shapes an item for ``format_name`` (a JSON-ready value, or a
    string for CEF)."""
    by_kind = {kind: _SHAPES[(kind, format_name)] for kind in ("alert", "event")}
    return lambda item: by_kind[item.kind](item.record)
