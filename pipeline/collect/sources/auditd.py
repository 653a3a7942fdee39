"""Linux auditd logs (``/var/log/audit/audit.log``, raw or ENRICHED format).

The records of one audit event share ``msg=audit(<time>:<serial>)``: SYSCALL, EXECVE,
PATH, CWD, SOCKADDR, PROCTITLE, ... ending with EOE. They are joined by serial, not by
adjacency: the kernel may interleave the records of concurrent events (real logs show a
PATH of one event after the SYSCALL of the next). An event is complete at its EOE, once
``WINDOW`` newer events have started (older kernels write no EOE), when the followed
file has been quiet for a second (``finish``, called on ``follow.IDLE``), or at once
when it is a user-space record (USER_LOGIN, CRED_ACQ, SERVICE_START, ...: always one
record). A record of an event already complete is refused with that reason. The
collector resumes a crashed run at the first line of the oldest event still held
(``held_since``).

The syscall's number is read in the table of the record's ``arch`` (x86_64, arm64,
riscv64; ``syscall_numbers.py``, generated from the kernel's UAPI headers), or taken
from the ENRICHED ``SYSCALL`` name. Mapping:

Category and action come from the shared syscall vocabulary (``syscalls.py``: exec,
read/write by the open flags, delete, rename, connect, chmod, ...; another syscall is
category process with its name or number as action). The object:

| syscall | object |
|---|---|
| execve, execveat | the executable (``exe``) |
| network syscalls | ``ip:port`` from SOCKADDR |
| any other | the PATH name (made absolute with CWD) |

Records without a syscall map by type: USER_AUTH, USER_LOGIN, USER_ACCT, USER_START ->
auth (``res=`` gives the outcome); CONFIG_CHANGE, DAEMON_* -> config. ``success=no`` is a
failure, and an exit of -EPERM or -EACCES is ``denied``. The actor is the process
(``comm``), ``pid``, ``ppid``, ``uid`` (4294967295, unset, is null) and the EXECVE
arguments (or the decoded PROCTITLE) as ``cmdline``; the user is the ENRICHED ``AUID``
name when present, else ``auid``. Every SYSCALL field is kept as ``auditd.<field>``, the
EXECVE arguments as ``auditd.execve.a<N>``, the object's PATH record as
``auditd.path.<field>`` and the call's name as ``auditd.syscall_name``; the parent's
program and command line (``actor.parent_process``, ``actor.parent_cmdline``) come from
the execs seen before (``parents.py``).
"""

from __future__ import annotations

import ipaddress
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from pipeline.collect.sources import ParseError
from pipeline.collect.sources.parents import ProcessTable
from pipeline.collect.sources.syscall_numbers import GENERIC_64, X86_64
from pipeline.collect.sources.syscalls import ACTIONS, OPEN, WRITE_FLAGS
from pipeline.schema.event import Event, InvalidEvent, normalize_event

_HEADER = re.compile(rb"^type=(\w+) msg=audit\((\d+)\.(\d+):(\d+)\):\s?(.*)$")
_FIELD = re.compile(rb'(\w[\w-]*)=("[^"]*"|\S+)')
_UNSET = 4294967295
_EPERM, _EACCES = -1, -13

SYSCALL_TABLES = {
    "c000003e": X86_64,  # x86_64
    "c00000b7": GENERIC_64,  # aarch64
    "c00000f3": GENERIC_64,  # riscv64
}
"""auditd's ``arch=`` to the table of its syscall numbers (59 is execve on x86_64, 221
on arm64); another architecture's numbers stay numbers."""


def syscall_name(syscall: dict[str, str], enriched: dict[str, str]) -> str:
    """The call's name: the ENRICHED ``SYSCALL`` field, else the number in the table of
    the record's architecture, else the number itself."""
    number = syscall.get("syscall", "")
    table = SYSCALL_TABLES.get(syscall.get("arch", "").lower(), {})
    return enriched.get("SYSCALL") or table.get(number, number)


_AUTH_TYPES = {
    "USER_AUTH": "auth",
    "USER_LOGIN": "login",
    "USER_ACCT": "acct",
    "USER_START": "session_start",
    "USER_END": "session_end",
}


Record = tuple[str, dict[str, str], str]
"""(type, fields, ENRICHED part) of one line."""

WINDOW = 8
"""Events held open at once. The kernel may interleave the records of concurrent events
(a PATH of event 60 after the SYSCALL of event 61: seen in real logs), so an event is
complete at its EOE, or once WINDOW newer events have started, not when the next one
starts."""
RECENT = 256
"""Serials completed lately, to tell a record arriving too late from a new event."""
_STANDALONE = re.compile(
    r"^(?:USER|CRED|DAEMON|SERVICE|CRYPTO|SYSTEM|USYS|ACCT|ROLE|GRP)_|^(?:ADD|DEL)_(?:USER|GROUP)$"
)
"""Record types user space sends as whole events (PAM, auditd itself, systemd, shadow
tools): one record, no EOE; complete at once."""


@dataclass
class _Held:
    line: int
    """The number of the feed call that brought its first record (``held_since``)."""
    ts_ms: int
    records: list[Record] = field(default_factory=list)


class AuditdParser:
    name = "auditd"

    def __init__(self, *, tenant: str, sandbox_id: str) -> None:
        self.tenant = tenant
        self.sandbox_id = sandbox_id
        self._open: dict[bytes, _Held] = {}
        """Events whose records are still coming, oldest first."""
        self._recent: deque[bytes] = deque()
        self._recent_set: set[bytes] = set()
        """The last RECENT serials completed (the set for lookups, the deque for age)."""
        self._fed = 0
        self.processes = ProcessTable()
        """What each pid last executed: the parent of later events (auditd gives a pid)."""

    @property
    def held_since(self) -> int | None:
        """The feed call (counted from 1) whose line began the oldest event still held:
        the collector resumes there after a crash. None when nothing is held."""
        oldest = next(iter(self._open.values()), None)
        return oldest.line if oldest is not None else None

    def feed(self, line: bytes) -> list[Event]:
        self._fed += 1
        line = line.rstrip(b"\r")
        if not line.strip():
            return []
        match = _HEADER.match(line)
        if match is None:
            raise ParseError("not an auditd record (no 'type=... msg=audit(...)')")
        rtype, seconds, millis, serial, body = match.groups()
        kind = rtype.decode()
        held = self._open.get(serial)
        if held is None:
            if serial in self._recent_set:
                raise ParseError(
                    f"a {kind} record of audit event {serial.decode()} came after the event "
                    f"was complete ({WINDOW} newer events had started)"
                )
            ts_ms = int(seconds) * 1000 + int(millis[:3].ljust(3, b"0"))
            held = self._open[serial] = _Held(self._fed, ts_ms)
        raw, _, enriched = body.partition(b"\x1d")
        held.records.append((kind, _fields(raw, kind), enriched.decode(errors="replace")))
        done: list[Event] = []
        if rtype == b"EOE" or (len(held.records) == 1 and _STANDALONE.match(kind)):
            done += self._complete(serial)
        while len(self._open) > WINDOW:
            done += self._complete(next(iter(self._open)))
        return done

    def finish(self) -> list[Event]:
        done: list[Event] = []
        while self._open:
            done += self._complete(next(iter(self._open)))
        return done

    def _complete(self, serial: bytes) -> list[Event]:
        held = self._open.pop(serial)
        self._recent.append(serial)
        self._recent_set.add(serial)
        if len(self._recent) > RECENT:
            self._recent_set.discard(self._recent.popleft())
        records = [r for r in held.records if r[0] != "EOE"]
        if not records:
            return []
        try:
            event = self._event(serial.decode(), records, held.ts_ms)
            self.processes.follow(event)
            return [normalize_event(event, now_ms=0)]
        except (InvalidEvent, ValueError) as exc:
            raise ParseError(f"audit event {serial.decode()}: {exc}") from None

    def _event(self, serial: str, records: list[Record], ts_ms: int) -> dict[str, Any]:
        by_type: dict[str, list[dict[str, str]]] = {}
        enriched: dict[str, str] = {}
        for rtype, fields, extra in records:
            by_type.setdefault(rtype, []).append(fields)
            enriched.update(_fields(extra.encode()))
        syscall = by_type.get("SYSCALL", [None])[0]
        if syscall is not None:
            category, action, obj = _syscall(syscall, by_type, enriched)
            main = syscall
        else:
            rtype = records[0][0]
            main = records[0][1]
            category = "auth" if rtype in _AUTH_TYPES else "config"
            action = _AUTH_TYPES.get(rtype, rtype.lower())
            obj = main.get("exe") or main.get("op") or ""
        attributes = {f"auditd.{k}": v for k, v in main.items()}
        attributes["auditd.records"] = ",".join(r[0] for r in records)
        attributes.update(_record_fields(by_type, syscall, enriched))
        outcome = _outcome(main)
        return {
            "event_id": f"auditd:{self.sandbox_id}:{ts_ms}:{serial}",
            "ts": ts_ms,
            "tenant": self.tenant,
            "sandbox_id": self.sandbox_id,
            "category": category,
            "action": action,
            "level": {"success": "info", "failure": "notice", "denied": "warning"}[outcome],
            "outcome": outcome,
            "actor": {
                "user": enriched.get("AUID") or main.get("acct") or main.get("auid", ""),
                "uid": _uid(main.get("uid")),
                "pid": _uid(main.get("pid")),
                "ppid": _uid(main.get("ppid")),
                "process": main.get("comm", ""),
                "cmdline": _cmdline(by_type),
            },
            "object": obj,
            "attributes": attributes,
        }


_STRING_FIELDS = frozenset(("name", "cwd", "proctitle", "comm", "exe", "acct", "path"))
_EXECVE_ARG = re.compile(r"^a\d+$")


def _fields(raw: bytes, rtype: str = "") -> dict[str, str]:
    """key=value pairs; a string field written unquoted is hex (auditd's escaping)."""
    out = {}
    for key_bytes, value in _FIELD.findall(raw):
        key = key_bytes.decode()
        text = value.decode(errors="replace").strip("'")  # msg='op=... res=failed'
        if text.startswith('"'):
            out[key] = text[1:-1]
        elif key in _STRING_FIELDS or (rtype == "EXECVE" and _EXECVE_ARG.match(key)):
            out[key] = _unhex(text)
        else:
            out[key] = text
    return out


def _syscall(
    syscall: dict[str, str], by_type: dict[str, list[dict[str, str]]], enriched: dict[str, str]
) -> tuple[str, str, str]:
    name = syscall_name(syscall, enriched)
    category, action = ACTIONS.get(name, ("process", name or "syscall"))
    path = _path(by_type)
    if action == "exec":
        return category, action, syscall.get("exe", path)
    if name in OPEN:
        flags_arg = syscall.get("a2" if name in ("openat", "openat2") else "a1", "0")
        flags = int(flags_arg, 16) if name != "creat" else WRITE_FLAGS
        return category, "write" if flags & WRITE_FLAGS else "read", path
    if category == "network":
        return category, action, _sockaddr(by_type)
    return category, action, path


def _record_fields(
    by_type: dict[str, list[dict[str, str]]],
    syscall: dict[str, str] | None,
    enriched: dict[str, str],
) -> dict[str, str]:
    """What Sigma's auditd rules test besides the SYSCALL fields: the EXECVE arguments
    (``auditd.execve.a0`` ...: the SYSCALL record has its own a0..a3, the call's raw
    arguments), the object's PATH record (``auditd.path.name``, ``nametype``, ``mode``
    ...) and the syscall's name (``auditd.syscall_name``, from the ENRICHED ``SYSCALL``
    field or the table of its architecture)."""
    out: dict[str, str] = {}
    execve = by_type.get("EXECVE", [None])[0]
    if execve is not None:
        out.update({f"auditd.execve.{k}": v for k, v in execve.items()})
    paths = by_type.get("PATH", [])
    chosen = _main_path(paths)
    if chosen is not None:
        out.update({f"auditd.path.{k}": v for k, v in chosen.items()})
    if syscall is not None:
        out["auditd.syscall_name"] = syscall_name(syscall, enriched)
    return out


def _main_path(paths: list[dict[str, str]]) -> dict[str, str] | None:
    """The PATH record of the object: the one created, opened or deleted (not the
    PARENT directory's), else the last."""
    return next(
        (p for p in paths if p.get("nametype") in ("CREATE", "NORMAL", "DELETE")),
        paths[-1] if paths else None,
    )


def _path(by_type: dict[str, list[dict[str, str]]]) -> str:
    chosen = _main_path(by_type.get("PATH", []))
    if chosen is None:
        return ""
    name = chosen.get("name", "")
    cwd = by_type.get("CWD", [{}])[0].get("cwd", "")
    if name and not name.startswith("/") and cwd:
        return f"{cwd.rstrip('/')}/{name}"
    return name


def _sockaddr(by_type: dict[str, list[dict[str, str]]]) -> str:
    saddr = by_type.get("SOCKADDR", [{}])[0].get("saddr", "")
    try:
        data = bytes.fromhex(saddr)
    except ValueError:
        return saddr
    family = int.from_bytes(data[:2], "little") if len(data) >= 2 else 0
    if family == 2 and len(data) >= 8:
        return f"{ipaddress.IPv4Address(data[4:8])}:{int.from_bytes(data[2:4], 'big')}"
    if family == 10 and len(data) >= 24:
        return f"[{ipaddress.IPv6Address(data[8:24])}]:{int.from_bytes(data[2:4], 'big')}"
    if family == 1:
        return data[2:].split(b"\0", 1)[0].decode(errors="replace")
    return saddr


def _cmdline(by_type: dict[str, list[dict[str, str]]]) -> str:
    execve = by_type.get("EXECVE", [None])[0]
    if execve is not None:
        # argc is a number in the record, not a bound to trust: a forged
        # argc=4277777772 would loop for hours. The arguments are the aN fields present.
        argc = execve.get("argc", "0")
        present = sum(1 for name in execve if name[:1] == "a" and name[1:].isdigit())
        count = min(int(argc) if argc.isdigit() else 0, present)
        return " ".join(execve.get(f"a{i}", "") for i in range(count))
    title = by_type.get("PROCTITLE", [{}])[0].get("proctitle", "")
    return title.replace("\0", " ")


def _unhex(value: str) -> str:
    """auditd writes a string as hex when it holds spaces or special characters."""
    if value and len(value) % 2 == 0 and all(c in "0123456789ABCDEF" for c in value):
        try:
            return bytes.fromhex(value).decode(errors="replace")
        except ValueError:
            return value
    return value


def _uid(value: str | None) -> int | None:
    if value is None or not value.lstrip("-").isdigit():
        return None
    number = int(value)
    return None if number < 0 or number == _UNSET else number


def _outcome(fields: dict[str, str]) -> str:
    if fields.get("res") in ("failed", "0", "no"):
        return "failure"
    if fields.get("success") == "no":
        exit_code = fields.get("exit", "")
        if exit_code.lstrip("-").isdigit() and int(exit_code) in (_EPERM, _EACCES):
            return "denied"
        return "failure"
    return "success"
