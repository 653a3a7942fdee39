"""``auditpipe export`` against the real ClickHouse: a range of stored events and alerts
as OCSF Parquet, read back with pyarrow, every row valid against the OCSF 1.8.0 schema,
laid out by class and event day; the tenant filter holds against a hostile name."""

from __future__ import annotations

import secrets
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from pipeline.config import Settings
from pipeline.outputs.clickhouse.request_builder import (
    EVENT_COLUMNS,
    REPEAT_COLUMNS,
    build_event_columns,
)
from pipeline.rules.alerts import ALERT_COLUMNS, alert_columns
from pipeline.sim.simulate import FleetSimulator
from tests.integration.helpers import provision, run_cli
from tests.outputs.alerts_for_tests import alerts
from tests.siem.ocsf_schema import problems

pytestmark = pytest.mark.integration

START = 1_795_860_000_000  # 2026-11-28 ...
DAY = 86_400_000


def without_nulls(value: Any) -> Any:
    """A Parquet row as the record it was: absent attributes come back as nulls."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def store(settings: Settings, n: int = 3_000) -> tuple[list[dict[str, Any]], list[Any]]:
    """``n`` simulated events over two days, and 40 alerts, inserted as the sink would."""
    client = provision(settings)
    db = settings.clickhouse.database
    events = [dict(e) for e in FleetSimulator(12, seed=5).events(n, start_ms=START)]
    for i, event in enumerate(events):
        event["ts"] = START + i * (2 * DAY // len(events))  # two event days
        event["kafka_partition"], event["kafka_offset"] = 0, i
        event["prev_hash"] = event.get("prev_hash") or secrets.token_bytes(32)
        event["hash"] = event.get("hash") or secrets.token_bytes(32)
    client.insert(
        f"{db}.events",
        build_event_columns(events, repeats=False),
        column_names=list(EVENT_COLUMNS[:-REPEAT_COLUMNS]),
        column_oriented=True,
    )
    found = alerts(40)
    client.insert(
        f"{db}.alerts", alert_columns(found), column_names=list(ALERT_COLUMNS), column_oriented=True
    )
    return events, found


def test_ocsf_parquet_by_class_and_day_every_row_valid(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    events, found = store(isolated_settings)
    out = tmp_path / "lake"
    done = run_cli(
        isolated_settings,
        "export",
        "--since",
        str(START - DAY),
        "--until",
        str(START + 3 * DAY),
        "--out",
        str(out),
        "--rows-per-file",
        "1000",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"events: {len(events):,} exported" in done.stdout
    rows: list[dict[str, Any]] = []
    folders = Counter()
    for path in sorted(out.rglob("*.parquet")):
        table = pq.read_table(path)
        assert table.num_rows <= 1000
        folders[path.parent.parent.name] += table.num_rows
        assert path.parent.name.startswith("eventDay=2026")
        rows += [without_nulls(r) for r in table.to_pylist()]
    assert not list(out.rglob(".*.tmp"))
    by_uid = Counter(r["metadata"]["uid"] for r in rows)
    assert set(by_uid) == {e["event_id"] for e in events} | {a.alert_id for a in found}
    assert max(by_uid.values()) == 1
    assert folders["detection_finding"] == len(found)
    assert {"process_activity", "file_system_activity"} <= set(folders)
    invalid = [(r["class_uid"], p) for r in rows for p in problems(r)][:5]
    assert invalid == []
    chained = next(r for r in rows if r["metadata"]["uid"] == events[7]["event_id"])
    assert chained["unmapped"]["auditpipe"]["hash"] == events[7]["hash"].hex()


def test_the_tenant_filter_is_a_parameter_and_json_lines_work(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    events, _ = store(isolated_settings)
    tenant = events[0]["tenant"]

    def export(name: str, *extra: str) -> list[dict[str, Any]]:
        out = tmp_path / name
        done = run_cli(
            isolated_settings, "export", "--since", str(START), "--out", str(out), *extra
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return [
            orjson.loads(line) for p in out.rglob("*.jsonl") for line in p.read_bytes().splitlines()
        ]

    own = export("own", "--tenant", tenant, "--what", "events", "--format", "ocsf-json")
    assert {r["metadata"]["tenant_uid"] for r in own} == {tenant}
    assert len(own) == sum(e["tenant"] == tenant for e in events)
    hostile = export("hostile", "--tenant", f"{tenant}' OR '1'='1", "--format", "ecs-json")
    assert hostile == []
    lake = tmp_path / "hostile-lake"
    done = run_cli(
        isolated_settings,
        "export",
        "--since",
        str(START),
        "--out",
        str(lake),
        "--tenant",
        f"{tenant}' OR '1'='1",
    )
    assert done.returncode == 0 and not list(lake.rglob("*.parquet")), done.stderr[-2000:]
    mine = tmp_path / "own-lake"
    done = run_cli(
        isolated_settings, "export", "--since", str(START), "--out", str(mine), "--tenant", tenant
    )
    tenants = {
        r["metadata"]["tenant_uid"]
        for p in mine.rglob("*.parquet")
        for r in pq.read_table(p).to_pylist()
    }
    assert done.returncode == 0 and tenants == {tenant}, done.stderr[-2000:]
    bad = run_cli(isolated_settings, "export", "--since", "yesterday-ish", "--out", "x")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--since" in bad.stderr
