"""Audit events and alerts as OCSF 1.8.0 records (https://schema.ocsf.io/1.8.0/).

An event goes to the class of its category (the table ``CLASSES``; the activity from its
action, ``ACTIVITIES``); an alert becomes a Detection Finding (2004). Every record
carries ``metadata.uid`` (the event or alert id), ``metadata.tenant_uid``,
``metadata.sequence`` (the event's seq) and the sandbox as the ``device`` (a virtual
device whose ``uid`` is the sandbox id). What OCSF has no attribute for — the hash-chain
links (``prev_hash``, ``hash``), the category, level and byte count, the free-form
attributes — stays under ``unmapped.auditpipe``, so an analyst can still ``verify`` a
record's place in its chain from the SIEM copy.

Invariants (tests/siem/test_ocsf.py validates records against the official schema of
the pinned version, offline):
- ``type_uid`` = ``class_uid * 100 + activity_id``; ``category_uid`` = ``class_uid // 1000``;
- an action not in the class's table is ``activity_id`` 99 (Other) with the action as
  ``activity_name``, never dropped;
- the mapping neither adds nor removes secrets: events are mapped after redaction.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from pipeline.siem.common import (
    ALERT_SEVERITY,
    LEVEL_SEVERITY,
    SEVERITY_NAMES,
    millis,
    tactics,
    techniques,
)

OCSF_VERSION = "1.8.0"
_DIGITS = re.compile("[0-9]+")
"""A port: ASCII digits only (``str.isdigit`` takes other scripts' digits too)."""

CLASSES: dict[str, tuple[int, str]] = {
    "process": (1007, "Process Activity"),
    "file": (1001, "File System Activity"),
    "permission": (1001, "File System Activity"),  # chmod/chown/setcap: Set Security
    "network": (4001, "Network Activity"),
    "data_transfer": (4001, "Network Activity"),  # with the bytes moved as traffic
    "auth": (3002, "Authentication"),
    "api": (6003, "API Activity"),
    "config": (5019, "Device Config State Change"),
    "lifecycle": (6002, "Application Lifecycle"),  # the sandbox as the application
    "resource": (0, "Base Event"),  # usage samples: no OCSF class measures them
}
"""Category -> (class_uid, class_name)."""

ACTIVITIES: dict[int, dict[str, tuple[int, str]]] = {
    1007: {
        **dict.fromkeys(("exec", "spawn", "fork", "clone", "start", "launch"), (1, "Launch")),
        **dict.fromkeys(("exit", "kill", "terminate", "stop"), (2, "Terminate")),
        **dict.fromkeys(("ptrace", "inject", "process_vm_writev"), (4, "Inject")),
        **dict.fromkeys(("setuid", "setgid", "setresuid", "setreuid"), (5, "Set User ID")),
    },
    1001: {
        **dict.fromkeys(("create", "creat", "mkdir", "touch"), (1, "Create")),
        "read": (2, "Read"),
        **dict.fromkeys(("write", "append", "modify", "update", "truncate"), (3, "Update")),
        **dict.fromkeys(("delete", "unlink", "remove", "rmdir"), (4, "Delete")),
        **dict.fromkeys(("rename", "move"), (5, "Rename")),
        **dict.fromkeys(("utime", "touch_attr", "setxattr"), (6, "Set Attributes")),
        **dict.fromkeys(("chmod", "chown", "chgrp", "setfacl", "setcap"), (7, "Set Security")),
        **dict.fromkeys(("stat", "getxattr"), (8, "Get Attributes")),
        "mount": (12, "Mount"),
        **dict.fromkeys(("umount", "unmount"), (13, "Unmount")),
        **dict.fromkeys(("open", "openat"), (14, "Open")),
    },
    4001: {
        **dict.fromkeys(("connect", "open", "dns"), (1, "Open")),
        **dict.fromkeys(("close", "disconnect"), (2, "Close")),
        "reset": (3, "Reset"),
        **dict.fromkeys(("upload", "download", "send", "receive", "transfer"), (6, "Traffic")),
        **dict.fromkeys(("listen", "bind", "accept"), (7, "Listen")),
    },
    3002: {
        **dict.fromkeys(("login", "logon", "authenticate", "auth"), (1, "Logon")),
        **dict.fromkeys(("logout", "logoff"), (2, "Logoff")),
        **dict.fromkeys(("su", "sudo", "switch_user"), (7, "Account Switch")),
    },
    6003: {
        **dict.fromkeys(("create", "post", "put_object"), (1, "Create")),
        **dict.fromkeys(("read", "get", "list", "describe", "call"), (2, "Read")),
        **dict.fromkeys(("update", "put", "patch", "set"), (3, "Update")),
        "delete": (4, "Delete"),
    },
    5019: {"set": (1, "Log"), "change": (1, "Log"), "update": (1, "Log")},
    6002: {
        **dict.fromkeys(("install",), (1, "Install")),
        **dict.fromkeys(("start", "create", "boot"), (3, "Start")),
        **dict.fromkeys(("stop", "destroy", "exit", "shutdown"), (4, "Stop")),
        "restart": (5, "Restart"),
        "update": (8, "Update"),
    },
    0: {},
}
"""class_uid -> action -> (activity_id, activity_name). Anything else: 99, the action."""

_STATUS = {"success": (1, "Success"), "failure": (2, "Failure"), "denied": (2, "Failure")}


@cache
def product() -> dict[str, str]:
    try:
        ours = version("auditpipe")
    except PackageNotFoundError:  # run from a checkout that was not installed
        ours = "0"
    return {"name": "auditpipe", "vendor_name": "auditpipe", "version": ours}


def event(ev: dict[str, Any]) -> dict[str, Any]:
    """One audit event (after redaction) as a record of its category's OCSF class."""
    category = ev["category"]
    action = str(ev.get("action") or "")
    class_uid, class_name = CLASSES.get(category, (0, "Base Event"))
    if category == "permission" and action in ACTIVITIES[1007]:  # setuid: a process's
        class_uid, class_name = CLASSES["process"]
    activity_id, activity_name = ACTIVITIES[class_uid].get(action, (99, action or "Other"))
    if category == "permission" and activity_id == 99:
        activity_id, activity_name = 7, "Set Security"
    severity_id = LEVEL_SEVERITY.get(ev.get("level") or "info", 1)
    record: dict[str, Any] = {
        "class_uid": class_uid,
        "class_name": class_name,
        "category_uid": class_uid // 1000,
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": class_uid * 100 + activity_id,
        "severity_id": severity_id,
        "severity": SEVERITY_NAMES[severity_id],
        "time": millis(ev["ts"]),
        "message": " ".join(
            part for part in (category, action, str(ev.get("object") or "")) if part
        ),
        "metadata": _metadata(ev.get("event_id"), ev.get("tenant"), "audit.events", ev.get("seq")),
        "device": _device(ev.get("sandbox_id")),
        "unmapped": {"auditpipe": _unmapped(ev)},
    }
    outcome = ev.get("outcome")
    if outcome in _STATUS:
        record["status_id"], record["status"] = _STATUS[outcome]
        if outcome == "denied":
            record["status_detail"] = "denied"
    _SHAPERS.get(class_uid, _base)(record, ev)
    if record.get("actor") == {}:  # no process or user known: the sandbox acted
        record["actor"] = {"app_name": "sandbox", "app_uid": str(ev.get("sandbox_id") or "")}
    return record


def alert(al: dict[str, Any]) -> dict[str, Any]:
    """One alert as a Detection Finding (2004): the rule is the analytic, the rule's
    ATT&CK tags the attacks, the evidence event ids the related events."""
    severity_id = ALERT_SEVERITY.get(al.get("severity") or "", 99)
    first, last = millis(al["first_ts"]), millis(al["last_ts"])
    evidence = [str(uid) for uid in al.get("evidence") or ()]
    finding: dict[str, Any] = {
        "uid": al["alert_id"],
        "title": al.get("title") or al["rule_id"],
        "analytic": {"uid": al["rule_id"], "name": al["rule_id"], "type_id": 1, "type": "Rule"},
        "first_seen_time": first,
        "last_seen_time": last,
        "related_events": [{"uid": uid} for uid in evidence],
        "related_events_count": len(evidence),
        "tags": [{"name": "tag", "value": str(tag)} for tag in al.get("tags") or ()],
    }
    attacks = _attacks(al.get("tags"))
    if attacks:
        finding["attacks"] = attacks
    return {
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "category_uid": 2,
        "activity_id": 1,
        "activity_name": "Create",
        "type_uid": 200401,
        "severity_id": severity_id,
        "severity": SEVERITY_NAMES.get(severity_id, al.get("severity") or "Other"),
        "time": last,
        "start_time": first,
        "end_time": last,
        "count": int(al.get("count") or 1),
        "is_alert": True,
        "status_id": 1,
        "status": "New",
        "message": al.get("title") or al["rule_id"],
        "metadata": _metadata(al["alert_id"], al.get("tenant"), "audit.alerts", None),
        "device": _device(al.get("sandbox_id")),
        "finding_info": finding,
    }


def _metadata(uid: Any, tenant: Any, log_name: str, seq: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "version": OCSF_VERSION,
        "product": product(),
        "log_name": log_name,
        # The host profile: every record names its sandbox as the device (and its actor).
        "profiles": ["host"],
    }
    if uid:
        meta["uid"] = str(uid)
    if tenant:
        meta["tenant_uid"] = str(tenant)
    if seq is not None:
        meta["sequence"] = int(seq)
    return meta


def _device(sandbox_id: Any) -> dict[str, Any]:
    return {
        "type_id": 6,
        "type": "Virtual",
        "uid": str(sandbox_id or ""),
        "name": str(sandbox_id or ""),
    }


def _unmapped(ev: dict[str, Any]) -> dict[str, Any]:
    kept = {
        key: ev.get(key) for key in ("category", "action", "level", "bytes", "prev_hash", "hash")
    }
    kept["attributes"] = dict(ev.get("attributes") or {})
    return {key: value for key, value in kept.items() if value not in (None, "", {})}


def _user(actor: dict[str, Any]) -> dict[str, Any]:
    user: dict[str, Any] = {}
    if actor.get("user"):
        user["name"] = str(actor["user"])
    if actor.get("uid") is not None:
        user["uid"] = str(actor["uid"])
    return user


def _process(actor: dict[str, Any], path: str | None = None) -> dict[str, Any]:
    """The actor's process; empty when its pid is not known (OCSF identifies a process
    by pid or uid, and we have no other identity for it)."""
    process: dict[str, Any] = {}
    if actor.get("pid") is None:
        return process
    process["pid"] = int(actor["pid"])
    name = actor.get("process") or (posixpath.basename(path) if path else None)
    if name:
        process["name"] = str(name)
    if actor.get("cmdline"):
        process["cmd_line"] = str(actor["cmdline"])
    if path:
        process["file"] = _file(path)
    if actor.get("ppid") is not None:
        process["parent_process"] = _parent(actor)
    user = _user(actor)
    if user:
        process["user"] = user
    return process


def _parent(actor: dict[str, Any]) -> dict[str, Any]:
    """The parent process: its pid, and its program (``name``, ``path``) and command line
    where known."""
    parent: dict[str, Any] = {"pid": int(actor["ppid"])}
    if actor.get("parent_process"):
        path = str(actor["parent_process"])
        parent["name"] = _file(path)["name"]
        parent["path"] = path
    if actor.get("parent_cmdline"):
        parent["cmd_line"] = str(actor["parent_cmdline"])
    return parent


def _file(path: str) -> dict[str, Any]:
    return {"name": posixpath.basename(path.rstrip("/")) or path, "path": path, "type_id": 0}


def _actor(ev: dict[str, Any]) -> dict[str, Any]:
    actor = ev.get("actor") or {}
    out: dict[str, Any] = {}
    process = _process(actor)
    if process:
        out["process"] = process
    user = _user(actor)
    if user:
        out["user"] = user
    return out


def _process_activity(record: dict[str, Any], ev: dict[str, Any]) -> None:
    """The event's process is the one acted on (launched, ended); its parent the actor."""
    actor = ev.get("actor") or {}
    record["process"] = _process(actor, ev.get("object") or None) or _unknown_process(ev)
    record["actor"] = {"process": {"pid": int(actor["ppid"])}} if actor.get("ppid") else {}
    user = _user(actor)
    if user:
        record["actor"]["user"] = user


def _unknown_process(ev: dict[str, Any]) -> dict[str, Any]:
    """A process the event does not give the pid of: ``uid`` "unknown" (OCSF needs an
    identity), its name and executable from the object when there is one."""
    process: dict[str, Any] = {"uid": "unknown"}
    if ev.get("object"):
        process["name"] = posixpath.basename(str(ev["object"])) or str(ev["object"])
        process["file"] = _file(str(ev["object"]))
    return process


def _file_activity(record: dict[str, Any], ev: dict[str, Any]) -> None:
    record["file"] = _file(str(ev.get("object") or "") or "unknown")
    record["actor"] = _actor(ev)


def _network_activity(record: dict[str, Any], ev: dict[str, Any]) -> None:
    record["dst_endpoint"] = endpoint(str(ev.get("object") or ""))
    actor = _actor(ev)
    if actor:
        record["actor"] = actor
    if ev.get("bytes"):
        record["traffic"] = {"bytes_out": int(ev["bytes"]), "bytes": int(ev["bytes"])}


def _authentication(record: dict[str, Any], ev: dict[str, Any]) -> None:
    actor = ev.get("actor") or {}
    attributes = ev.get("attributes") or {}
    name = attributes.get("user") or attributes.get("account") or actor.get("user")
    record["user"] = {"name": str(name)} if name else {"name": "unknown"}
    # The service logged on to (OCSF wants it or the endpoint): the object, else unknown.
    record["service"] = {"name": str(ev.get("object") or "unknown")}
    if ev.get("object"):
        record["dst_endpoint"] = endpoint(str(ev["object"]))
    if actor:
        record["actor"] = _actor(ev)


def _api_activity(record: dict[str, Any], ev: dict[str, Any]) -> None:
    record["api"] = {
        "operation": str(ev.get("action") or ""),
        "service": {"name": str(ev.get("object") or "")},
    }
    record["actor"] = _actor(ev)
    record["src_endpoint"] = {"name": str(ev.get("sandbox_id") or "")}


def _config_change(record: dict[str, Any], ev: dict[str, Any]) -> None:
    record["actor"] = _actor(ev)


def _lifecycle(record: dict[str, Any], ev: dict[str, Any]) -> None:
    record["app"] = {"name": "sandbox", "uid": str(ev.get("sandbox_id") or "")}


def _base(record: dict[str, Any], ev: dict[str, Any]) -> None:
    actor = _actor(ev)
    if actor:
        record["actor"] = actor


_SHAPERS = {
    1007: _process_activity,
    1001: _file_activity,
    4001: _network_activity,
    3002: _authentication,
    6003: _api_activity,
    5019: _config_change,
    6002: _lifecycle,
}


def endpoint(target: str) -> dict[str, Any]:
    """``host:port``, ``[v6]:port``, a URL or a bare host as an OCSF network endpoint."""
    rest = target.split("://", 1)[1] if "://" in target else target
    rest = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    host, port = rest, None
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port = tail[1:] if tail.startswith(":") else None
    elif rest.count(":") == 1:
        host, port = rest.split(":")
    out: dict[str, Any] = {}
    if host:
        out["ip" if _is_ip(host) else "hostname"] = host
    else:  # OCSF wants a name, ip or hostname beside a port: ":0" alone is not valid
        out["name"] = target
    if port and _DIGITS.fullmatch(port) and int(port) < 65536:
        out["port"] = int(port)
    return out


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _attacks(tags: Any) -> list[dict[str, Any]]:
    found = techniques(tags)
    tactic = tactics(tags)
    first = {"uid": tactic[0][0], "name": tactic[0][1]} if tactic else None
    attacks: list[dict[str, Any]] = []
    for technique in found:
        attack: dict[str, Any] = {"technique": {"uid": technique.uid}}
        if technique.sub_uid:
            attack["sub_technique"] = {"uid": technique.sub_uid}
        if first:
            attack["tactic"] = first
        attacks.append(attack)
    if not attacks:
        attacks = [{"tactic": {"uid": uid, "name": name}} for uid, name in tactic]
    return attacks
