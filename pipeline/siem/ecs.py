"""Audit events and alerts as Elastic Common Schema documents (ECS 8.x field sets).

An event is ``event.kind: event`` with ``event.category``/``event.type`` from its
category and action (``CATEGORIES``, ``TYPES``); an alert is ``event.kind: alert`` with
``rule.*`` (the rule) and ``threat.*`` (its ATT&CK tags). The tenant is
``organization.id``, the sandbox ``host.id``/``host.name``. What ECS has no field for
(the hash-chain links, the evidence ids, the free-form attributes) goes to the custom
field set ``auditpipe.*``, which ECS reserves no name of. Documents are nested objects
(Elastic's ``_bulk`` accepts them as they are).
"""

from __future__ import annotations

import posixpath
from datetime import UTC, datetime
from typing import Any

from pipeline.siem.common import ALERT_SEVERITY, LEVEL_SEVERITY, millis, tactics, techniques
from pipeline.siem.ocsf import endpoint

ECS_VERSION = "8.17.0"

CATEGORIES: dict[str, list[str]] = {
    "process": ["process"],
    "file": ["file"],
    "permission": ["file", "iam"],
    "network": ["network"],
    "data_transfer": ["network"],
    "auth": ["authentication"],
    "api": ["api"],
    "config": ["configuration"],
    "resource": ["host"],
    "lifecycle": ["host"],
}
TYPES: dict[str, list[str]] = {
    "exec": ["start"],
    "spawn": ["start"],
    "start": ["start"],
    "exit": ["end"],
    "kill": ["end"],
    "stop": ["end"],
    "create": ["creation"],
    "read": ["access"],
    "open": ["access"],
    "write": ["change"],
    "chmod": ["change"],
    "chown": ["change"],
    "setuid": ["change"],
    "capset": ["change"],
    "set": ["change"],
    "delete": ["deletion"],
    "unlink": ["deletion"],
    "connect": ["connection", "start"],
    "upload": ["connection"],
    "download": ["connection"],
    "login": ["start"],
    "logout": ["end"],
    "sample": ["info"],
}
"""action -> event.type; any other action is ``info``."""
_OUTCOME = {"success": "success", "failure": "failure", "denied": "failure"}


def _timestamp(ms: int) -> str:
    return (
        datetime.fromtimestamp(ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def event(ev: dict[str, Any]) -> dict[str, Any]:
    """One audit event (after redaction) as an ECS document."""
    category, action = ev["category"], str(ev.get("action") or "")
    actor = ev.get("actor") or {}
    doc: dict[str, Any] = {
        "@timestamp": _timestamp(millis(ev["ts"])),
        "ecs": {"version": ECS_VERSION},
        "event": {
            "kind": "event",
            "category": CATEGORIES.get(category, ["host"]),
            "type": TYPES.get(action, ["info"]),
            "action": action,
            "outcome": _OUTCOME.get(ev.get("outcome") or "", "unknown"),
            "id": ev.get("event_id"),
            "severity": LEVEL_SEVERITY.get(ev.get("level") or "info", 1),
            "dataset": "auditpipe.events",
            "module": "auditpipe",
        },
        "organization": {"id": ev.get("tenant")},
        "host": {"id": ev.get("sandbox_id"), "name": ev.get("sandbox_id")},
        "auditpipe": _custom(ev),
    }
    if ev.get("seq") is not None:
        doc["event"]["sequence"] = int(ev["seq"])
    process = _process(actor)
    if process:
        doc["process"] = process
    user = {
        k: str(actor[f]) for k, f in (("name", "user"), ("id", "uid")) if actor.get(f) is not None
    }
    if user:
        doc["user"] = user
    _object(doc, category, str(ev.get("object") or ""), ev)
    return doc


def _process(actor: dict[str, Any]) -> dict[str, Any]:
    process: dict[str, Any] = {}
    if actor.get("pid") is not None:
        process["pid"] = int(actor["pid"])
    if actor.get("process"):
        process["name"] = str(actor["process"])
    if actor.get("cmdline"):
        process["command_line"] = str(actor["cmdline"])
    parent: dict[str, Any] = {}
    if actor.get("ppid") is not None:
        parent["pid"] = int(actor["ppid"])
    if actor.get("parent_process"):
        parent["executable"] = str(actor["parent_process"])
        parent["name"] = posixpath.basename(parent["executable"])
    if actor.get("parent_cmdline"):
        parent["command_line"] = str(actor["parent_cmdline"])
    if parent:
        process["parent"] = parent
    return process


def _object(doc: dict[str, Any], category: str, obj: str, ev: dict[str, Any]) -> None:
    """The event's object in the field set of its category."""
    if not obj and not ev.get("bytes"):
        return
    if category in ("file", "permission"):
        doc["file"] = {"path": obj, "name": obj.rstrip("/").rsplit("/", 1)[-1]}
    elif category == "process":
        doc.setdefault("process", {})["executable"] = obj
    elif category in ("network", "data_transfer", "auth"):
        where = endpoint(obj) if obj else {}
        destination: dict[str, Any] = {"address": obj} if obj else {}
        if "ip" in where:
            destination["ip"] = where["ip"]
        if "hostname" in where:
            destination["domain"] = where["hostname"]
        if "port" in where:
            destination["port"] = where["port"]
        if ev.get("bytes"):
            destination["bytes"] = int(ev["bytes"])
        doc["destination"] = destination
    else:
        doc["auditpipe"]["object"] = obj


def _custom(ev: dict[str, Any]) -> dict[str, Any]:
    kept = {key: ev.get(key) for key in ("prev_hash", "hash", "bytes")}
    kept["attributes"] = dict(ev.get("attributes") or {})
    return {key: value for key, value in kept.items() if value not in (None, "", {})}


def alert(al: dict[str, Any]) -> dict[str, Any]:
    """One alert as an ECS alert document (``event.kind: alert``)."""
    first, last = millis(al["first_ts"]), millis(al["last_ts"])
    tags = [str(tag) for tag in al.get("tags") or ()]
    doc: dict[str, Any] = {
        "@timestamp": _timestamp(last),
        "ecs": {"version": ECS_VERSION},
        "message": al.get("title") or al["rule_id"],
        "event": {
            "kind": "alert",
            "category": ["intrusion_detection"],
            "type": ["info"],
            "id": al["alert_id"],
            "severity": ALERT_SEVERITY.get(al.get("severity") or "", 0),
            "start": _timestamp(first),
            "end": _timestamp(last),
            "dataset": "auditpipe.alerts",
            "module": "auditpipe",
        },
        "rule": {"id": al["rule_id"], "name": al.get("title") or al["rule_id"]},
        "organization": {"id": al.get("tenant")},
        "host": {"id": al.get("sandbox_id"), "name": al.get("sandbox_id")},
        "tags": tags,
        "auditpipe": {
            "severity": al.get("severity"),
            "count": int(al.get("count") or 1),
            "evidence": [str(uid) for uid in al.get("evidence") or ()],
        },
    }
    threat = _threat(tags)
    if threat:
        doc["threat"] = threat
    return doc


def _threat(tags: list[str]) -> dict[str, Any]:
    found, tactic = techniques(tags), tactics(tags)
    if not found and not tactic:
        return {}
    threat: dict[str, Any] = {"framework": "MITRE ATT&CK"}
    if tactic:
        threat["tactic"] = {"id": [uid for uid, _ in tactic], "name": [name for _, name in tactic]}
    if found:
        threat["technique"] = {"id": [t.uid for t in found]}
        subs = [t.sub_uid for t in found if t.sub_uid]
        if subs:
            threat["technique"]["subtechnique"] = {"id": subs}
    return threat
