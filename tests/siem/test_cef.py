"""CEF lines: the header and extension escaping holds for any value (property tests), and
a hostile value can never forge a field or a second record."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.siem import cef
from tests.siem.cef_parse import parse

HOSTILE = st.lists(
    st.sampled_from([*"|=\\\n\r aZ9é漢🙂\t\"'", "cs1=", " rt=1 ", "CEF:0|", "\\="]),
    max_size=20,
).map("".join)


def _alert(**changed: object) -> dict[str, object]:
    alert = {
        "alert_id": "a-1",
        "rule_id": "R1",
        "title": "t",
        "severity": "high",
        "tags": ["attack.t1059"],
        "tenant": "acme",
        "sandbox_id": "sb-1",
        "first_ts": 1_000,
        "last_ts": 2_000,
        "count": 2,
        "evidence": ["e1", "e2"],
    }
    alert.update(changed)
    return alert


@settings(max_examples=300, deadline=None)
@given(title=HOSTILE, rule=HOSTILE, tenant=HOSTILE, sandbox=HOSTILE)
def test_any_alert_value_reads_back_as_itself(
    title: str, rule: str, tenant: str, sandbox: str
) -> None:
    line = cef.alert(
        _alert(title=title or "t", rule_id=rule or "R", tenant=tenant, sandbox_id=sandbox)
    )
    assert "\n" not in line and "\r" not in line
    header, extension = parse(line)
    assert header[0] == "CEF:0" and header[1:3] == ["auditpipe", "auditpipe"]
    # Header values lose their line breaks (the specification allows none there).
    flat = lambda s: s.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")  # noqa: E731
    assert header[4] == flat(rule or "R") and header[5] == flat(title or "t")
    assert header[6] == "8"
    assert extension.get("cs1", "") == tenant
    assert extension.get("dvchost", "") == sandbox
    assert extension["externalId"] == "a-1" and extension["cnt"] == "2"
    assert extension["cs3"] == "e1,e2" and extension["rt"] == "2000"


@settings(max_examples=300, deadline=None)
@given(obj=HOSTILE, cmdline=HOSTILE, user=HOSTILE)
def test_any_event_value_reads_back_as_itself(obj: str, cmdline: str, user: str) -> None:
    event = {
        "event_id": "e-1",
        "ts": 5,
        "tenant": "acme",
        "sandbox_id": "sb",
        "seq": 3,
        "category": "file",
        "action": "read",
        "level": "warning",
        "actor": {"user": user, "pid": 4, "cmdline": cmdline},
        "object": obj,
        "hash": "h",
    }
    header, extension = parse(cef.event(event))
    assert header[4] == "file:read" and header[6] == "5"
    assert extension.get("filePath", "") == obj
    assert extension.get("cs2", "") == cmdline
    assert extension.get("suser", "") == user
    assert extension["spid"] == "4" and extension["cs6"] == "h" and extension["cs3"] == "3"


def test_a_value_cannot_forge_another_field() -> None:
    forged = "x cs1=other-tenant externalId=fake"
    header, extension = parse(cef.alert(_alert(title=forged, sandbox_id=forged)))
    assert header[5] == forged
    assert extension["cs1"] == "acme" and extension["externalId"] == "a-1"
    assert extension["dvchost"] == forged
    assert "cs1\\=other-tenant" in cef.alert(_alert(sandbox_id=forged))


def test_a_label_goes_only_with_its_value() -> None:
    _, extension = parse(cef.alert(_alert(tags=[], tenant="")))
    assert "cs1Label" not in extension and "cs2Label" not in extension
    assert extension["cs3Label"] == "evidence"


def test_severities_follow_the_cef_scale() -> None:
    levels = {
        s: parse(cef.alert(_alert(severity=s)))[0][6] for s in ("low", "medium", "high", "critical")
    }
    assert levels == {"low": "3", "medium": "5", "high": "8", "critical": "10"}
