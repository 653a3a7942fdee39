"""ECS documents: the field sets SIEM rules and dashboards look for are where ECS puts
them, and hostile values pass through as values."""

from __future__ import annotations

from typing import Any

from pipeline.siem import ecs


def _event(**changed: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": "e-1",
        "ts": 1_795_860_000_123,
        "tenant": "acme",
        "sandbox_id": "sb-1",
        "seq": 7,
        "category": "network",
        "action": "connect",
        "level": "warning",
        "outcome": "denied",
        "actor": {
            "user": "ci",
            "uid": 1000,
            "pid": 42,
            "ppid": 1,
            "process": "curl",
            "cmdline": "curl x",
        },
        "object": "203.0.113.9:4444",
        "bytes": 100,
        "attributes": {},
        "prev_hash": "p",
        "hash": "h",
    }
    event.update(changed)
    return event


def test_an_event_in_ecs_field_sets() -> None:
    doc = ecs.event(_event())
    assert doc["@timestamp"] == "2026-11-28T10:00:00.123Z"
    assert doc["event"]["kind"] == "event" and doc["event"]["category"] == ["network"]
    assert doc["event"]["type"] == ["connection", "start"]
    assert doc["event"]["outcome"] == "failure" and doc["event"]["id"] == "e-1"
    assert doc["event"]["sequence"] == 7
    assert doc["destination"] == {
        "address": "203.0.113.9:4444",
        "ip": "203.0.113.9",
        "port": 4444,
        "bytes": 100,
    }
    assert doc["process"] == {
        "pid": 42,
        "name": "curl",
        "command_line": "curl x",
        "parent": {"pid": 1},
    }
    assert doc["user"] == {"name": "ci", "id": "1000"}
    assert doc["organization"] == {"id": "acme"} and doc["host"]["id"] == "sb-1"
    assert doc["auditpipe"]["hash"] == "h" and doc["auditpipe"]["prev_hash"] == "p"


def test_file_and_process_objects() -> None:
    assert ecs.event(_event(category="file", action="read", object="/etc/shadow"))["file"] == {
        "path": "/etc/shadow",
        "name": "shadow",
    }
    doc = ecs.event(_event(category="process", action="exec", object="/usr/bin/nc"))
    assert doc["process"]["executable"] == "/usr/bin/nc" and doc["event"]["type"] == ["start"]


def test_an_alert_with_rule_and_threat() -> None:
    doc = ecs.alert(
        {
            "alert_id": "a-1",
            "rule_id": "NET-002",
            "title": "Reverse shell",
            "severity": "critical",
            "tags": ["attack.execution", "attack.t1059.004", "attack.command_and_control"],
            "tenant": "acme",
            "sandbox_id": "sb-1",
            "first_ts": 1_000,
            "last_ts": 2_000,
            "count": 2,
            "evidence": ["e1", "e2"],
        }
    )
    assert doc["event"]["kind"] == "alert" and doc["event"]["severity"] == 5
    assert doc["rule"] == {"id": "NET-002", "name": "Reverse shell"}
    assert doc["threat"] == {
        "framework": "MITRE ATT&CK",
        "tactic": {"id": ["TA0002", "TA0011"], "name": ["Execution", "Command and Control"]},
        "technique": {"id": ["T1059"], "subtechnique": {"id": ["T1059.004"]}},
    }
    assert doc["auditpipe"]["evidence"] == ["e1", "e2"] and doc["message"] == "Reverse shell"
