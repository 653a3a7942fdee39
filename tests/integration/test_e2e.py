"""End to end on the real broker and worker: JSON lines -> publish -> Kafka -> worker ->
ClickHouse, with every field of every event intact."""

from __future__ import annotations

import random
from datetime import UTC
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.config import Settings
from pipeline.outputs.clickhouse.request_builder import EVENT_COLUMNS
from pipeline.schema.event import event_to_json
from pipeline.sim.simulate import FleetSimulator
from tests.integration.helpers import WorkerProcess, provision, run_cli, wait_for_rows

pytestmark = pytest.mark.integration

EVENTS = 10_000


def varied_events(count: int) -> list[dict[str, Any]]:
    """Simulated events, then every optional field exercised: hashes, nulls, unicode."""
    rng = random.Random(11)
    events = []
    for event in FleetSimulator(25, tenants=4, seed=3).events(count):
        if rng.random() < 0.5:
            event["prev_hash"] = rng.randbytes(32)
            event["hash"] = rng.randbytes(32)
        if rng.random() < 0.2:
            event["actor"]["uid"] = None
            event["bytes"] = rng.randrange(0, 1 << 40)
        if rng.random() < 0.1:
            event["object"] = "/workspace/données/报告-ü.txt"
            event["attributes"]["note"] = "ünïcødé ✓"
        events.append(event_to_json(event))
    return events


def stored_rows(client: Any, database: str) -> dict[str, dict[str, Any]]:
    result = client.query(f"SELECT {', '.join(EVENT_COLUMNS)} FROM {database}.events")
    return {row[0]: dict(zip(result.column_names, row, strict=True)) for row in result.result_rows}


def expected_row(event: dict[str, Any]) -> dict[str, Any]:
    actor = event["actor"]
    return {
        "event_id": event["event_id"],
        "ts": event["ts"],
        "tenant": event["tenant"],
        "sandbox_id": event["sandbox_id"],
        "seq": event["seq"],
        "category": event["category"],
        "action": event["action"],
        "level": event["level"],
        "outcome": event["outcome"],
        "actor_user": actor["user"],
        "actor_uid": actor["uid"],
        "actor_pid": actor["pid"],
        "actor_ppid": actor["ppid"],
        "actor_process": actor["process"],
        "actor_cmdline": actor["cmdline"],
        "actor_parent_process": actor.get("parent_process", ""),
        "actor_parent_cmdline": actor.get("parent_cmdline", ""),
        "object": event["object"],
        "bytes": event["bytes"],
        "attributes": event["attributes"],
        "prev_hash": event["prev_hash"],
        "hash": event["hash"],
        "repeat_count": 1,  # no repeats among them: nothing collapsed
        "repeat_seqs": [],
        "repeat_hashes": [],
        "repeat_prev_hashes": [],
    }


ENRICHMENT = (
    "owner",
    "environment",
    "image",
    "labels",
    "sandbox_known",
    "severity",
    "matched_rules",
)
"""Columns the worker derives (enrichment, detection): checked apart."""


def as_comparable(row: dict[str, Any]) -> dict[str, Any]:
    """The event's own fields (provenance, the sink's MAC and enrichment columns are
    checked apart)."""
    out = {
        k: v
        for k, v in row.items()
        if not k.startswith("kafka_") and k != "sink_mac" and k not in ENRICHMENT
    }
    out["ts"] = int(row["ts"].replace(tzinfo=UTC).timestamp() * 1000 + 0.5)
    for name in ("prev_hash", "hash"):
        value = row[name]
        out[name] = (
            None
            if value is None
            else (value.hex() if isinstance(value, bytes) else value.encode("latin-1").hex())
        )
    return out


def test_every_published_event_is_stored_intact(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    settings = isolated_settings
    client = provision(settings)
    events = varied_events(EVENTS)
    source = tmp_path / "events.jsonl"
    source.write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n")

    published = run_cli(settings, "publish", str(source))
    assert published.returncode == 0, published.stderr
    assert f"published {EVENTS} events" in published.stdout

    with WorkerProcess(settings):
        wait_for_rows(client, f"{settings.clickhouse.database}.events", EVENTS)
    rows = stored_rows(client, settings.clickhouse.database)

    assert len(rows) == EVENTS
    mismatches = [
        (e["event_id"], expected_row(e), as_comparable(rows[e["event_id"]]))
        for e in events
        if as_comparable(rows[e["event_id"]]) != expected_row(e)
    ]
    assert not mismatches, f"{len(mismatches)} rows differ, first: {mismatches[0]}"
    # No inventory in this test: every sandbox is unknown, and severity is filled in.
    assert {r["environment"] for r in rows.values()} == {"unknown"}
    assert not any(r["sandbox_known"] for r in rows.values())
    assert {r["severity"] for r in rows.values()} <= {"low", "medium", "high", "critical"}
    offsets = {(r["kafka_partition"], r["kafka_offset"]) for r in rows.values()}
    assert len(offsets) >= EVENTS // settings.publish.batch_events
