"""Audit events and alerts as ArcSight Common Event Format (CEF) 0 messages, for syslog
receivers (QRadar, ArcSight, and any SIEM with a CEF parser).

``CEF:0|Vendor|Product|Version|Signature ID|Name|Severity|Extension``

Escaping, as the CEF specification has it (and this is what keeps a hostile value from
forging fields): in the header, ``\\`` and ``|`` are escaped with a backslash; in the
extension, ``\\`` and ``=`` are, and a line break becomes ``\\n`` (``\\r`` for a
carriage return), so one record is always one line. Header values have their line
breaks replaced by a space (the specification allows none there). Extension keys are
our own fixed names, never a value's.

Severity is CEF's 0-10: alert low 3, medium 5, high 8, critical 10; an event's level
debug 0 .. critical 10. The extension keys (``ALERT_KEYS``, ``EVENT_KEYS``) use CEF's
dictionary where it has a key (``rt``, ``externalId``, ``suser``, ``spid``, ``fname``,
``dhost``, ``dpt``, ``cnt`` ...) and the custom string slots ``cs1``..``cs6`` with
their labels otherwise.
"""

from __future__ import annotations

from typing import Any

from pipeline.siem.common import millis
from pipeline.siem.ocsf import endpoint, product

ALERT_SEVERITY = {"low": 3, "medium": 5, "high": 8, "critical": 10}
LEVEL_SEVERITY = {"debug": 0, "info": 1, "notice": 3, "warning": 5, "error": 8, "critical": 10}


def header_escape(value: Any) -> str:
    text = str(value).replace("\\", "\\\\").replace("|", "\\|")
    return text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


def extension_escape(value: Any) -> str:
    text = str(value).replace("\\", "\\\\").replace("=", "\\=")
    return text.replace("\n", "\\n").replace("\r", "\\r")


def message(signature: str, name: str, severity: int, extension: list[tuple[str, Any]]) -> str:
    """One CEF line; extension pairs whose value is None or empty are left out, and a
    custom slot's label with them."""
    ours = product()
    head = "|".join(
        header_escape(part)
        for part in (
            "CEF:0",
            ours["vendor_name"],
            ours["name"],
            ours["version"],
            signature,
            name,
            severity,
        )
    )
    given = {key for key, value in extension if value not in (None, "")}
    pairs = " ".join(
        f"{key}={extension_escape(value)}"
        for key, value in extension
        if key in given and (not key.endswith("Label") or key.removesuffix("Label") in given)
    )
    return f"{head}|{pairs}"


def alert(al: dict[str, Any]) -> str:
    evidence = [str(uid) for uid in al.get("evidence") or ()]
    return message(
        al["rule_id"],
        al.get("title") or al["rule_id"],
        ALERT_SEVERITY.get(al.get("severity") or "", 5),
        [
            ("rt", millis(al["last_ts"])),
            ("start", millis(al["first_ts"])),
            ("end", millis(al["last_ts"])),
            ("externalId", al["alert_id"]),
            ("cnt", int(al.get("count") or 1)),
            ("dvchost", al.get("sandbox_id")),
            ("cat", "alert"),
            ("cs1Label", "tenant"),
            ("cs1", al.get("tenant")),
            ("cs2Label", "tags"),
            ("cs2", ",".join(str(tag) for tag in al.get("tags") or ())),
            ("cs3Label", "evidence"),
            ("cs3", ",".join(evidence)),
            ("cs4Label", "severity"),
            ("cs4", al.get("severity")),
        ],
    )


def event(ev: dict[str, Any]) -> str:
    """One audit event (after redaction) as a CEF line; the signature is category:action."""
    actor = ev.get("actor") or {}
    category, action, obj = ev["category"], str(ev.get("action") or ""), str(ev.get("object") or "")
    target: list[tuple[str, Any]] = []
    if category in ("file", "permission"):
        target = [("filePath", obj), ("fname", obj.rstrip("/").rsplit("/", 1)[-1])]
    elif category in ("network", "data_transfer", "auth") and obj:
        where = endpoint(obj)
        target = [
            ("dst", where.get("ip")),
            ("dhost", where.get("hostname")),
            ("dpt", where.get("port")),
        ]
        target.append(("request", obj))
    elif obj:
        target = [("dproc" if category == "process" else "request", obj)]
    return message(
        f"{category}:{action}",
        f"{category} {action}",
        LEVEL_SEVERITY.get(ev.get("level") or "info", 1),
        [
            ("rt", millis(ev["ts"])),
            ("externalId", ev.get("event_id")),
            ("dvchost", ev.get("sandbox_id")),
            ("cat", category),
            ("act", action),
            ("outcome", ev.get("outcome")),
            ("suser", actor.get("user")),
            ("suid", actor.get("uid")),
            ("spid", actor.get("pid")),
            ("sproc", actor.get("process")),
            *target,
            ("out", ev.get("bytes")),
            ("cs1Label", "tenant"),
            ("cs1", ev.get("tenant")),
            ("cs2Label", "cmdline"),
            ("cs2", actor.get("cmdline")),
            ("cs3Label", "seq"),
            ("cs3", ev.get("seq")),
            ("cs5Label", "prev_hash"),
            ("cs5", ev.get("prev_hash")),
            ("cs6Label", "hash"),
            ("cs6", ev.get("hash")),
        ],
    )
