"""Falco's JSON output (``json_output: true``), one alert per line.

| Falco | audit event |
|---|---|
| ``time`` (RFC 3339, ns) | ``ts`` |
| ``output_fields["container.id"]``, else ``k8s.pod.name``, else ``hostname`` | ``sandbox_id`` (unless configured) |
| ``evt.type`` by the shared syscall vocabulary (``syscalls.py``): execve -> exec, openat -> read or write (``evt.is_open_write``, else the ``O_*`` names in ``evt.arg.flags``), connect, chmod, ...; another type keeps its name, category config | ``category``, ``action`` (the original stays in ``falco.evt.type``) |
| ``priority``: Emergency/Alert/Critical; Error; Warning; Notice; Informational/Info; Debug | ``level`` critical; error; warning; notice; info; debug |
| ``user.name``, ``user.uid``, ``proc.pid``, ``proc.ppid``, ``proc.name``, ``proc.cmdline`` | ``actor`` |
| exec: ``proc.exepath`` (else ``proc.exe``, else the command's first word); network: the peer of ``fd.name`` (``fd.rip``:``fd.rport`` when given); else ``fd.name`` (else ``fs.path.name``) | ``object`` |
| ``rule``, ``output``, ``tags``, ``source`` and every other output field | ``attributes`` (``falco.rule``, ...) |
| ``proc.pexepath`` (else ``proc.pexe``), ``proc.pcmdline``; else the execs seen before | ``actor.parent_process``, ``actor.parent_cmdline`` (``parents.py``) |
"""

from __future__ import annotations

import uuid
from typing import Any

from pipeline.collect.sources import BLANK, ParseError, load_json_line
from pipeline.collect.sources.parents import ProcessTable
from pipeline.collect.sources.syscalls import ACTIONS, OPEN, WRITE_FLAG_NAMES
from pipeline.schema.event import Event, InvalidEvent, normalize_event, parse_ts

PRIORITY_LEVEL = {
    "emergency": "critical",
    "alert": "critical",
    "critical": "critical",
    "error": "error",
    "warning": "warning",
    "notice": "notice",
    "informational": "info",
    "info": "info",
    "debug": "debug",
}
_MAX_TS_NS = 10**16


class FalcoParser:
    name = "falco"

    def __init__(self, *, tenant: str, sandbox_id: str | None) -> None:
        self.tenant = tenant
        self.sandbox_id = sandbox_id
        self.processes = ProcessTable()
        """Parents Falco did not report (no proc.pexepath): from the execs seen."""

    held_since = None
    """One line is one event: nothing is ever held back."""

    def feed(self, line: bytes) -> list[Event]:
        alert = load_json_line(line)
        if alert is BLANK:
            return []
        if not isinstance(alert, dict) or "rule" not in alert:
            raise ParseError("not a Falco alert (no 'rule')")
        try:
            event = self._map(alert)
            self.processes.follow(event)
            return [normalize_event(event, now_ms=0)]
        except (InvalidEvent, KeyError, TypeError, ValueError) as exc:
            raise ParseError(f"cannot map Falco alert: {exc}") from None

    def finish(self) -> list[Event]:
        return []

    def _map(self, alert: dict[str, Any]) -> dict[str, Any]:
        fields: dict[str, Any] = alert.get("output_fields") or {}
        if not isinstance(fields, dict):
            raise ValueError(f"output_fields is {type(fields).__name__}, not an object")
        evt_type = str(fields.get("evt.type") or "alert")
        category, action = _vocabulary(evt_type, fields)
        sandbox = (
            self.sandbox_id
            or fields.get("container.id")
            or fields.get("k8s.pod.name")
            or alert.get("hostname")
            or "unknown"
        )
        attributes = {f"falco.{k}": v for k, v in fields.items() if v is not None}
        attributes.update(
            {
                "falco.rule": alert["rule"],
                "falco.output": alert.get("output", ""),
                "falco.tags": ",".join(alert.get("tags") or []),
                "falco.source": alert.get("source", "syscall"),
            }
        )
        ts = parse_ts(alert["time"]) if "time" in alert else _ns_to_ms(fields.get("evt.time"))
        return {
            "event_id": str(uuid.uuid4()),
            "ts": ts,
            "tenant": self.tenant,
            "sandbox_id": str(sandbox),
            "category": category,
            "action": action,
            "level": PRIORITY_LEVEL.get(str(alert.get("priority", "")).lower(), "warning"),
            "outcome": "success",
            "actor": {
                "user": str(fields.get("user.name") or ""),
                "uid": _int(fields.get("user.uid")),
                "pid": _int(fields.get("proc.pid")),
                "ppid": _int(fields.get("proc.ppid")),
                "process": str(fields.get("proc.name") or ""),
                "cmdline": str(fields.get("proc.cmdline") or ""),
                "parent_process": str(fields.get("proc.pexepath") or fields.get("proc.pexe") or ""),
                "parent_cmdline": str(fields.get("proc.pcmdline") or ""),
            },
            "object": _object(category, action, fields),
            "attributes": attributes,
        }


def _vocabulary(evt_type: str, fields: dict[str, Any]) -> tuple[str, str]:
    category, action = ACTIONS.get(evt_type, ("config", evt_type))
    if evt_type in OPEN:
        return category, "write" if _opened_for_writing(evt_type, fields) else "read"
    return category, action


def _opened_for_writing(evt_type: str, fields: dict[str, Any]) -> bool:
    said = fields.get("evt.is_open_write")
    if said is not None:
        return said is True or str(said).lower() == "true"
    flags = str(fields.get("evt.arg.flags") or "")
    return evt_type == "creat" or any(
        name in WRITE_FLAG_NAMES for name in flags.replace(",", "|").split("|")
    )


def _object(category: str, action: str, fields: dict[str, Any]) -> str:
    """What the action was done to, in the schema's terms (what auditd's source gives)."""
    if action == "exec":
        exe = fields.get("proc.exepath") or fields.get("proc.exe")
        if not exe:
            exe = str(fields.get("proc.cmdline") or "").split(" ", 1)[0]
        return str(exe or "")
    name = str(fields.get("fd.name") or fields.get("fs.path.name") or "")
    if category != "network":
        return name
    if fields.get("fd.rip") and fields.get("fd.rport") is not None:
        return f"{fields['fd.rip']}:{fields['fd.rport']}"
    local, arrow, remote = name.partition("->")
    if not arrow:
        return name
    return local if action == "accept" else remote


def _int(value: Any) -> int | None:
    if value is None or value == "":
        return None
    number = int(value)
    return number if number >= 0 else None


def _ns_to_ms(value: Any) -> int | None:
    if value is None:
        return None
    number = int(value)
    return number // 1_000_000 if number > _MAX_TS_NS else number
