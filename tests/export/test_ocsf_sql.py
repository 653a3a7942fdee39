"""The OCSF records ClickHouse builds (pipeline/export/ocsf_sql.py) are those of
pipeline/siem/ocsf.py: the same stored rows, hostile and edge values among them, shaped
both ways on the real ClickHouse and compared record by record."""

from __future__ import annotations

import itertools
import secrets
import uuid
from typing import Any

import pytest

from pipeline.export import ocsf_sql
from pipeline.export.rows import EVENT_FIELDS, as_alert, as_event
from pipeline.outputs.clickhouse.request_builder import (
    EVENT_COLUMNS,
    REPEAT_COLUMNS,
    build_event_columns,
)
from pipeline.rules.alerts import ALERT_COLUMNS, alert_columns, make_alert
from pipeline.siem import ocsf
from pipeline.sim.simulate import FleetSimulator
from tests.integration.helpers import provision

pytestmark = pytest.mark.integration

START = 1_795_860_000_000
OBJECTS = [
    "",
    "/etc/shadow",
    "/tmp/build/",
    "/",
    "relative/name\nwith newline",
    "10.0.0.5:443",
    "[fe80::1]:22",
    "[fe80::1]",
    "https://user@example.com:8443/path?q=1",
    "registry.npmjs.org",
    "1.2.3.4:99999",
    "host:٣٣",
    "::1",
    "a:b:c",
    "s3://bucket/key",
    "' OR 1=1 --",
    "\\x00\u202e\U0001f600",
    ":80",
    ":0",
    "1.2.3.04",
]
ACTIONS = sorted(
    {a for table in ocsf.ACTIVITIES.values() for a in table} | {"", "weird action", "exec"}
)
CATEGORIES = list(ocsf.CLASSES)


def _edge_events() -> list[dict[str, Any]]:
    """Every category with every action, cycling the objects and the actor's gaps."""
    actors = [
        {"user": "", "uid": None, "pid": None, "ppid": None, "process": "", "cmdline": ""},
        {"user": "ci", "uid": 0, "pid": 7, "ppid": 0, "process": "", "cmdline": "sh -c 'x|y'"},
        {"user": "", "uid": 1000, "pid": None, "ppid": 3, "process": "bash", "cmdline": ""},
        {"user": "root", "uid": None, "pid": 9, "ppid": 1, "process": "py\tthon", "cmdline": "c"},
    ]
    parents = [("/usr/bin/jävä/", "java -jar 'a b'.jar"), ("/", ""), ("", "sh\n-c x"), ("make", "")]
    actors += [
        {**actor, "parent_process": process, "parent_cmdline": cmdline}
        for actor, (process, cmdline) in zip(actors, parents, strict=True)
    ]
    attributes = [{}, {"user": "alice"}, {"account": "svc"}, {"k": "v", "user": ""}]
    objects, rest = itertools.cycle(OBJECTS), itertools.count()
    events = []
    for category, action in itertools.product(CATEGORIES, ACTIONS):
        i = next(rest)
        events.append(
            {
                "event_id": str(uuid.uuid4()),
                "tenant": ("acme", "", "t'x")[i % 3],
                "sandbox_id": f"sb-{i % 5}",
                "seq": i,
                "ts": START + i,
                "category": category,
                "action": action,
                "level": ("debug", "info", "notice", "warning", "error", "critical")[i % 6],
                "outcome": ("success", "failure", "denied")[i % 3],
                "actor": actors[i % len(actors)],
                "object": next(objects),
                "bytes": (None, 0, 12_345)[i % 3],
                "attributes": attributes[i % 4],
                "prev_hash": (None, bytes(32), secrets.token_bytes(32))[i % 3],
                "hash": secrets.token_bytes(32),
            }
        )
    return events


def _store(client: Any, db: str) -> None:
    events = [dict(e) for e in FleetSimulator(8, seed=11).events(2_000, start_ms=START)]
    events += _edge_events()
    for i, event in enumerate(events):
        event["kafka_partition"], event["kafka_offset"] = 0, i
    client.insert(
        f"{db}.events",
        build_event_columns(events, repeats=False),
        column_names=list(EVENT_COLUMNS[:-REPEAT_COLUMNS]),
        column_oriented=True,
    )
    tags = [
        ("attack.credential_access", "attack.t1003.008", "attack.T1003.008", "attack.t1552"),
        ("attack.execution",),
        (),
        ("attack.t1059\n", "attack.discovery", "attack.execution", "custom"),
    ]
    found = [
        make_alert(
            f"AP-{i}",
            ("", "Title | a=b")[i % 2],
            ("low", "medium", "high", "critical")[i % 4],
            tags[i % 4],
            f"tenant-{i % 3}",
            f"sb-{i}",
            START + i,
            START + 500 + i,
            i % 3,
            [f"e{j}" for j in range(i % 3)],
        )
        for i in range(12)
    ]
    client.insert(
        f"{db}.alerts", alert_columns(found), column_names=list(ALERT_COLUMNS), column_oriented=True
    )


def comparable(value: Any) -> Any:
    """A record with absent, NULL and empty objects or lists alike (Parquet's structs
    keep every field; ocsf.py leaves absent attributes out)."""
    if isinstance(value, dict):
        out = {k: comparable(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


WHERE = "ts >= {since:DateTime64(3)} AND ts < {until:DateTime64(3)}"
PARAMS = {"since": START - 1, "until": START + 10**7}


def _by_uid(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["uid"]: comparable(r) for r in rows}


def test_every_event_class_and_the_findings_match_the_python_shapes(
    isolated_settings: Any,
) -> None:
    client = provision(isolated_settings)
    db = isolated_settings.clickhouse.database
    _store(client, db)
    params = {k: v / 1000 for k, v in PARAMS.items()}
    stored = client.query(
        f"SELECT {', '.join(EVENT_FIELDS)} FROM {db}.events", settings={"max_threads": 1}
    ).result_rows
    expected = _by_uid([ocsf.event(as_event(tuple(row))) for row in stored])
    got: dict[str, dict[str, Any]] = {}
    for class_uid in ocsf_sql.event_classes():
        sql = ocsf_sql.events_sql(db, class_uid, WHERE)
        result = client.query(sql, parameters=params)
        rows = [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]
        assert {r["class_uid"] for r in rows} <= {class_uid}
        got.update(_by_uid(rows))
    assert set(got) == set(expected)
    differ = [(uid, expected[uid], got[uid]) for uid in expected if expected[uid] != got[uid]]
    assert differ[:3] == []

    alerts_where = "last_ts >= {since:DateTime64(3)} AND last_ts < {until:DateTime64(3)}"
    result = client.query(ocsf_sql.alerts_sql(db, alerts_where), parameters=params)
    findings = [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]
    stored_alerts = client.query(f"SELECT {', '.join(ALERT_COLUMNS)} FROM {db}.alerts")
    want = _by_uid([ocsf.alert(as_alert(tuple(r))) for r in stored_alerts.result_rows])
    assert len(findings) == len(want) == 12
    differ = [(u, want[u], g) for u, g in _by_uid(findings).items() if want[u] != g]
    assert differ[:3] == []
