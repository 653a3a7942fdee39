"""Hunting over history against the real ClickHouse: for every rule of the default pack,
the SQL of ``pipeline/rules/sql.py`` and the streaming engine agree on the same stored
events (the differential test of issue 17), and a hunt's results are stored once."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

import orjson
import pytest

from pipeline.export.run import range_params
from pipeline.hunt.run import HUNT_TAG, hunt, run_rule, store
from pipeline.outputs.clickhouse.request_builder import (
    EVENT_COLUMNS,
    REPEAT_COLUMNS,
    build_event_columns,
)
from pipeline.rules.compiler import compile_predicates
from pipeline.rules.engine import DetectionEngine
from pipeline.rules.examples import example_events
from pipeline.rules.language import RuleSet, load_rules
from pipeline.rules.sql import event_sql
from pipeline.sim.near_misses import NEAR_MISSES
from pipeline.sim.scenarios import SCENARIOS
from pipeline.sim.simulate import FleetSimulator
from tests.conftest import settings_for
from tests.integration.helpers import provision, run_cli

pytestmark = pytest.mark.integration

START = 1_795_860_000_000
STORED = (
    "event_id, toString(tenant), sandbox_id, seq, toUnixTimestamp64Milli(ts), "
    "toString(category), action, toString(level), toString(outcome), actor_user, actor_uid, "
    "actor_pid, actor_ppid, actor_process, actor_cmdline, toString(actor_parent_process), "
    "actor_parent_cmdline, object, bytes, attributes, owner, environment, image, labels, "
    "sandbox_known, toString(severity)"
)


OWNED_CASES = [
    ("acme-builds", "s3://acme-builds/x"),
    (" \tACME-builds\n, other", "s3://acme-builds/x"),
    ("acme-builds", "s3://acme-builds.evil/x"),
    (".acme.example", "https://a.b.acme.example:8443/p"),
    (".acme.example", "https://acme.example/p"),
    (".acme.example", "https://evilacme.example/p"),
    (",,", "s3://x/y"),
    ("", ""),
    ("[::1]", "http://[::1]:80/"),
    ("::1", "http://[::1]:80/"),
    ("user@h", "https://user@h/p"),
    ("h", "https://user@h/p"),
    ("ÄÖ.example", "https://äö.example/"),
    ("'); DROP TABLE events; --", "s3://'); DROP TABLE events; --/x"),
]
"""labels.owned_destinations against objects: case, blanks, look-alikes, empty entries,
IPv6, user info, non-ASCII, quotes (the engine and the SQL must agree on each)."""


def _events() -> list[dict[str, Any]]:
    """Every pack rule's examples (each in a sandbox of its own), the simulator's attack
    scenarios and near misses, and benign traffic."""
    pack = load_rules([])
    events: list[dict[str, Any]] = []
    for rule in pack.rules:
        for kind, examples in (("p", rule.positive), ("n", rule.negative)):
            for i, example in enumerate(examples):
                sandbox = f"sb-{rule.id}-{kind}{i}"
                for event in example_events(example):
                    event["sandbox_id"] = sandbox
                    event["ts"] += START - 1_795_000_000_000
                    events.append(event)
    for i, (owned, obj) in enumerate(OWNED_CASES):
        events.append(
            {
                "tenant": "acme",
                "sandbox_id": f"sb-owned-{i}",
                "seq": 1,
                "ts": START + i,
                "category": "data_transfer",
                "action": "upload",
                "level": "info",
                "outcome": "success",
                "environment": "dev",
                "actor": {
                    "user": "runner",
                    "uid": 1000,
                    "pid": 7,
                    "ppid": 1,
                    "process": "aws",
                    "cmdline": "",
                },
                "object": obj,
                "bytes": 10,
                "attributes": {},
                "labels": {"owned_destinations": owned},
            }
        )
    simulator = FleetSimulator(30, seed=17)
    names = [*SCENARIOS, *NEAR_MISSES]
    simulated = list(simulator.events(6_000, start_ms=START, scenarios=names))
    events += [dict(e) for e in simulator.with_inventory(simulated)]
    for i, event in enumerate(events):
        event["event_id"] = str(uuid.uuid4())
        event["object"] = event.get("object") or ""
        event["kafka_partition"], event["kafka_offset"] = 0, i
        event.setdefault("prev_hash", None)
        event.setdefault("hash", None)
    return events


def _stored(client: Any, db: str) -> list[dict[str, Any]]:
    """The events as ClickHouse holds them, as the engine takes events, in time order."""
    rows = client.query(f"SELECT {STORED} FROM {db}.events ORDER BY 5, 2, 3, 4").result_rows
    out = []
    for row in rows:
        (event_id, tenant, sandbox, seq, ts, category, action, level, outcome, user, uid, pid,
         ppid, process, cmdline, parent_process, parent_cmdline, obj, size, attributes, owner,
         environment, image, labels, known, severity) = row  # fmt: skip
        out.append(
            {
                "event_id": event_id,
                "tenant": tenant,
                "sandbox_id": sandbox,
                "seq": seq,
                "ts": ts,
                "category": category,
                "action": action,
                "level": level,
                "outcome": outcome,
                "actor": {
                    "user": user,
                    "uid": uid,
                    "pid": pid,
                    "ppid": ppid,
                    "process": process,
                    "cmdline": cmdline,
                    "parent_process": parent_process,
                    "parent_cmdline": parent_cmdline,
                },
                "object": obj,
                "bytes": size,
                "attributes": dict(attributes),
                "owner": owner,
                "environment": environment,
                "image": image,
                "labels": dict(labels),
                "sandbox_known": known,
                "severity": severity,
                "kafka_partition": 0,
            }
        )
    return out


@pytest.fixture(scope="module")
def stored(endpoints: Any, tmp_path_factory: Any) -> Any:
    settings = settings_for(endpoints, tmp_path_factory.mktemp("hunt"))
    client = provision(settings)
    db = settings.clickhouse.database
    events = _events()
    client.insert(
        f"{db}.events",
        build_event_columns(events, repeats=False),
        column_names=list(EVENT_COLUMNS[:-REPEAT_COLUMNS]),
        column_oriented=True,
    )
    return settings, client, _stored(client, db)


def _engine_hits(ruleset: RuleSet, events: list[dict[str, Any]]) -> dict[str, set[Any]]:
    """Per rule, the (tenant, sandbox) pairs the streaming engine alerted on (every rule
    enabled, one engine: the rules do not share state)."""
    rules = [replace(rule, enabled=True) for rule in ruleset.rules]
    engine = DetectionEngine(RuleSet(rules, ruleset.lists), suppress_ms=0)
    hits: dict[str, set[Any]] = {rule.id: set() for rule in rules}
    for alert in engine.process(events):
        hits[alert.rule_id].add((alert.tenant, alert.sandbox_id))
    return hits


def _compare(stored: Any, ruleset: RuleSet) -> tuple[list[Any], int]:
    """Each rule run both ways over the stored events: the disagreements (rule, hits the
    SQL missed, hits only the SQL found), and how many rules fired at all. A single-event
    rule is also compared event by event."""
    settings, client, events = stored
    db = settings.clickhouse.database
    params = range_params(START - 10**9, START + 10**9, None)
    where = "ts >= {since:DateTime64(3)} AND ts < {until:DateTime64(3)}"
    disagree, fired = [], 0
    by_engine = _engine_hits(ruleset, events)
    for rule in ruleset.rules:
        done = run_rule(client, db, rule, params)
        assert done.error is None, done.error
        assert all(HUNT_TAG in a.tags for a in done.alerts)
        sql = {(a.tenant, a.sandbox_id) for a in done.alerts}
        engine = by_engine[rule.id]
        fired += bool(engine)
        if sql != engine:
            disagree.append((rule.id, sorted(engine - sql)[:3], sorted(sql - engine)[:3]))
        if rule.kind == "event":
            assert rule.condition is not None
            matcher = compile_predicates([rule.condition])
            want = {e["event_id"] for e in events if matcher.match(e)}
            rows = client.query(event_sql(rule, f"{db}.events", where), parameters=params)
            got = {row[3] for row in rows.result_rows}
            if got != want:
                disagree.append((rule.id, sorted(want - got)[:3], sorted(got - want)[:3]))
    return disagree, fired


def test_the_sql_and_the_engine_agree_on_every_rule_of_the_pack(stored: Any) -> None:
    pack = load_rules([])
    disagree, fired = _compare(stored, pack)
    assert disagree == []
    assert fired >= len(pack.rules) * 0.9  # the events exercise (nearly) every rule


def test_hits_are_stored_once_and_a_tenant_sees_only_its_own(stored: Any) -> None:
    settings, client, events = stored
    db = settings.clickhouse.database
    pack = load_rules([])
    params = range_params(START - 10**9, START + 10**9, None)
    runs = list(hunt(client, db, pack.enabled, params))
    alerts = [a for run in runs for a in run.alerts]
    assert alerts and all(run.scanned > 0 for run in runs)
    assert store(client, db, alerts) == len(alerts)
    assert store(client, db, alerts) == 0  # the same hunt again: nothing new
    tenant = events[0]["tenant"]
    own = range_params(START - 10**9, START + 10**9, tenant)
    mine = [a for run in hunt(client, db, pack.enabled, own) for a in run.alerts]
    assert mine and {a.tenant for a in mine} == {tenant}
    hostile = range_params(START - 10**9, START + 10**9, f"{tenant}' OR '1'='1")
    assert [a for run in hunt(client, db, pack.enabled, hostile) for a in run.alerts] == []


EDGE_RULES = r"""
rules:
  - id: EDGE-NOCASE-RE
    title: nocase regex keeps its classes
    severity: low
    condition: {actor.cmdline: {regex: 'CURL\s+\S+', nocase: true}}
  - id: EDGE-CIDR
    title: private destination
    severity: low
    condition: {object_host: {cidr: [10.0.0.0/8, 192.168.0.0/16, "fd00::/8"]}}
  - id: EDGE-PORT
    title: a port
    severity: low
    condition: {all: [{object_port: {gte: 1024}}, {not: {object_port: {lt: 1}}}]}
  - id: EDGE-NOT-NULL
    title: not of a missing number
    severity: low
    condition:
      all: [{category: process}, {not: {bytes: {gt: 0}}}, {not: {actor.ppid: {equals: 1}}}]
  - id: EDGE-EXISTS
    title: attribute present, text as number
    severity: low
    condition:
      any:
        - attributes.mode: {exists: true}
        - attributes.size: {gt: 10}
        - labels.team: {exists: false}
  - id: EDGE-TEXT
    title: text operators
    severity: low
    condition:
      any:
        - object: {contains_all: [/etc/, sh]}
        - actor.process: {startswith: [py, no], endswith: [sh]}
        - object: {equals: ["' OR 1=1 --", "/etc/shadow"]}
        - actor.user: {in: [root, Runner], nocase: true}
  - id: EDGE-KEYWORDS
    title: keyword search over the text
    severity: low
    condition: {text: {regex: 'SHADOW|\.ssh/|sim\.', nocase: true}}
  - id: EDGE-DISTINCT
    title: distinct hosts by user
    severity: low
    condition: {category: network}
    threshold: {window: 10m, by: [actor.user], distinct: {field: object_host, gte: 3}}
  - id: EDGE-PARENT
    title: the parent process (schema v2)
    severity: low
    condition:
      any:
        - all: [{actor.parent_cmdline: {regex: '\.CI/BUILD', nocase: true}}, {actor.process: cargo}]
        - all: [{category: process}, {not: {actor.parent_process: {endswith: /bash}}}]
        - all: [{category: process}, {actor.parent_cmdline: {equals: ""}}]
  - id: EDGE-OWNED
    title: the sandbox's own destination
    severity: low
    condition: {object_owned: true}
  - id: EDGE-SUM
    title: bytes summed
    severity: low
    condition: {category: [network, data_transfer]}
    threshold: {window: 1h, sum: {field: bytes, gt: 1000}}
  - id: EDGE-ANY-ORDER
    title: both in any order
    severity: low
    sequence:
      within: 10m
      ordered: false
      steps:
        - condition: {category: file, action: read}
        - condition: {category: network}
"""


def test_the_sql_and_the_engine_agree_on_every_operator(stored: Any, tmp_path: Any) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text(EDGE_RULES)
    rules = load_rules([path], builtin=False)
    disagree, fired = _compare(stored, rules)
    assert disagree == []
    assert fired >= len(rules.rules) - 1


SIGMA = """
title: Reverse shell through /dev/tcp
id: 4d3a2b1c-0000-4000-8000-000000000001
status: test
logsource: {product: linux, category: process_creation}
detection:
  selection:
    CommandLine|contains: /dev/tcp/
  condition: selection
level: high
tags: [attack.execution, attack.t1059.004]
"""


def test_the_command_runs_a_sigma_file_and_stores_its_hits(stored: Any, tmp_path: Any) -> None:
    settings, _client, _events = stored
    sigma = tmp_path / "devtcp.yml"
    sigma.write_text(SIGMA)
    since, until = str(START - 10**9), str(START + 10**9)
    done = run_cli(
        settings, "hunt", str(sigma), "--since", since, "--until", until, "--json", "--store"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    hits = [orjson.loads(line) for line in done.stdout.splitlines()]
    assert hits and all(h["hunt"] and HUNT_TAG in h["tags"] for h in hits)
    assert "1 rules run" in done.stderr and f"{len(hits)} stored" in done.stderr
    again = run_cli(settings, "hunt", str(sigma), "--since", since, "--until", until, "--store")
    assert again.returncode == 0 and "0 stored" in again.stderr, again.stderr[-2000:]
    lookaround = tmp_path / "bad.yaml"
    lookaround.write_text(
        "rules:\n  - id: LOOK\n    title: t\n    severity: low\n"
        "    condition: {object: {regex: 'a(?=b)'}}\n"
    )
    bad = run_cli(settings, "hunt", str(lookaround), "--since", since, "--until", until)
    assert bad.returncode == 1 and "LOOK" in bad.stderr and "RE2" in bad.stderr
    usage = run_cli(settings, "hunt", "--since", "last tuesday")
    assert usage.returncode == 2 and usage.stderr.count("\n") == 1
    nowhere = settings.model_copy(
        update={"clickhouse": settings.clickhouse.model_copy(update={"database": "nowhere"})}
    )
    missing = run_cli(nowhere, "hunt", str(sigma), "--since", "30d")
    assert missing.returncode == 3 and "auditpipe init" in missing.stderr, missing.stderr
