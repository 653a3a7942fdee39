"""OCSF records validate against the official 1.8.0 schema (offline), for every category
and action of the mapping tables and for hostile values; the ids, the tenant, the
sequence and the hash-chain links survive the mapping."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.schema.event import CATEGORIES, LEVELS
from pipeline.siem import ocsf
from tests.siem.ocsf_schema import problems


def _event(**changed: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": "0b6a4a0e-2f1e-4b8a-9c51-0d7a1f3c2e11",
        "ts": 1_795_860_000_000,
        "tenant": "acme",
        "sandbox_id": "sb-1",
        "seq": 41,
        "category": "process",
        "action": "exec",
        "level": "info",
        "outcome": "success",
        "actor": {
            "user": "ci",
            "uid": 1000,
            "pid": 42,
            "ppid": 1,
            "process": "bash",
            "cmdline": "bash -c make",
        },
        "object": "/usr/bin/make",
        "bytes": None,
        "attributes": {"container": "c1"},
        "prev_hash": "aa" * 32,
        "hash": "bb" * 32,
    }
    event.update(changed)
    return event


CASES = [
    (category, action)
    for category in sorted(CATEGORIES)
    for action in sorted(set(ocsf.ACTIVITIES[ocsf.CLASSES[category][0]]) | {"something_else", ""})
]


@pytest.mark.parametrize(("category", "action"), CASES)
def test_every_category_and_action_is_valid(category: str, action: str) -> None:
    record = ocsf.event(_event(category=category, action=action, bytes=512))
    assert problems(record) == []
    assert record["type_uid"] == record["class_uid"] * 100 + record["activity_id"]
    assert record["category_uid"] == record["class_uid"] // 1000


def test_the_mapping_keeps_what_an_investigation_needs() -> None:
    record = ocsf.event(_event(category="file", action="read", object="/etc/shadow"))
    assert (record["class_uid"], record["activity_id"]) == (1001, 2)
    assert record["metadata"]["uid"] == "0b6a4a0e-2f1e-4b8a-9c51-0d7a1f3c2e11"
    assert record["metadata"]["tenant_uid"] == "acme" and record["metadata"]["sequence"] == 41
    assert record["metadata"]["version"] == "1.8.0"
    assert record["file"] == {"name": "shadow", "path": "/etc/shadow", "type_id": 0}
    assert record["device"]["uid"] == "sb-1"
    kept = record["unmapped"]["auditpipe"]
    assert kept["prev_hash"] == "aa" * 32 and kept["hash"] == "bb" * 32
    assert kept["attributes"] == {"container": "c1"}


def test_classes_follow_the_documented_table() -> None:
    classes = {c: ocsf.event(_event(category=c, action="x"))["class_uid"] for c in CATEGORIES}
    assert classes == {
        "process": 1007,
        "file": 1001,
        "permission": 1001,
        "network": 4001,
        "data_transfer": 4001,
        "auth": 3002,
        "api": 6003,
        "config": 5019,
        "lifecycle": 6002,
        "resource": 0,
    }
    setuid = ocsf.event(_event(category="permission", action="setuid"))
    assert (setuid["class_uid"], setuid["activity_id"]) == (1007, 5)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("10.0.0.5:22", {"ip": "10.0.0.5", "port": 22}),
        ("[2001:db8::1]:443", {"ip": "2001:db8::1", "port": 443}),
        (
            "https://user@bucket.example.com:8443/x?y=1",
            {"hostname": "bucket.example.com", "port": 8443},
        ),
        ("registry.npmjs.org", {"hostname": "registry.npmjs.org"}),
        ("2001:db8::2", {"ip": "2001:db8::2"}),
        ("", {"name": ""}),
        ("host:99999", {"hostname": "host"}),
        (":0", {"name": ":0", "port": 0}),  # a port alone is not a valid OCSF endpoint
    ],
)
def test_network_targets_become_endpoints(target: str, expected: dict[str, Any]) -> None:
    assert ocsf.endpoint(target) == expected


TEXT = st.text(max_size=60)


@settings(max_examples=150, deadline=None)
@given(
    category=st.sampled_from(sorted(CATEGORIES)),
    action=TEXT,
    obj=TEXT,
    level=st.sampled_from(LEVELS),
    outcome=st.sampled_from([None, "success", "failure", "denied"]),
    pid=st.none() | st.integers(0, 2**32 - 1),
    seq=st.none() | st.integers(0, 2**63 - 1),
    size=st.none() | st.integers(0, 2**63 - 1),
    user=st.none() | TEXT,
)
def test_hostile_values_stay_valid(
    category: str, action: str, obj: str, level: str, outcome: str | None,
    pid: int | None, seq: int | None, size: int | None, user: str | None,
) -> None:  # fmt: skip
    actor = {"user": user, "pid": pid, "ppid": pid, "uid": pid, "cmdline": obj}
    record = ocsf.event(
        _event(category=category, action=action, object=obj, level=level, outcome=outcome,
               actor=actor, seq=seq, bytes=size)
    )  # fmt: skip
    assert problems(record) == []


def _alert(**changed: Any) -> dict[str, Any]:
    alert: dict[str, Any] = {
        "alert_id": "5d0e8c1a-6a57-5b2e-8f3e-7d9a0c1b2e3f",
        "rule_id": "CRED-001",
        "title": "Read of /etc/shadow",
        "severity": "high",
        "tags": ["attack.credential_access", "attack.t1003.008", "attack.t1552", "pci"],
        "tenant": "acme",
        "sandbox_id": "sb-1",
        "first_ts": 1_795_860_000_000,
        "last_ts": 1_795_860_005_000,
        "count": 3,
        "evidence": ["e1", "e2", "e3"],
    }
    alert.update(changed)
    return alert


def test_an_alert_is_a_valid_detection_finding() -> None:
    record = ocsf.alert(_alert())
    assert problems(record) == []
    assert (record["class_uid"], record["type_uid"], record["severity_id"]) == (2004, 200401, 4)
    info = record["finding_info"]
    assert info["uid"] == "5d0e8c1a-6a57-5b2e-8f3e-7d9a0c1b2e3f"
    assert info["analytic"] == {"uid": "CRED-001", "name": "CRED-001", "type_id": 1, "type": "Rule"}
    assert [e["uid"] for e in info["related_events"]] == ["e1", "e2", "e3"]
    assert (info["first_seen_time"], info["last_seen_time"]) == (
        1_795_860_000_000,
        1_795_860_005_000,
    )
    assert info["attacks"] == [
        {
            "technique": {"uid": "T1003"},
            "sub_technique": {"uid": "T1003.008"},
            "tactic": {"uid": "TA0006", "name": "Credential Access"},
        },
        {"technique": {"uid": "T1552"}, "tactic": {"uid": "TA0006", "name": "Credential Access"}},
    ]
    assert record["count"] == 3 and record["metadata"]["tenant_uid"] == "acme"


@pytest.mark.parametrize("severity", ["low", "medium", "high", "critical"])
def test_every_alert_severity_is_valid(severity: str) -> None:
    assert problems(ocsf.alert(_alert(severity=severity, tags=[], evidence=[]))) == []
