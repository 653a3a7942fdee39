"""Two tenants with the same sandbox names and the same event ids, end to end: collector
chains, dedup, enrichment, the live chain check and the rule windows keep them apart;
a known id replayed with other content is dead-lettered and alerted on."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import Settings
from pipeline.schema.event import normalize_event
from tests.integration.helpers import (
    WorkerProcess,
    collect_events,
    provision,
    publish_events,
    read_topic,
    run_cli,
    scalar,
    wait_for_rows,
)

pytestmark = pytest.mark.integration

IDS = [f"evt-{n}" for n in range(12)]


def activity(tenant: str, now: int) -> list[dict[str, Any]]:
    """The same ids and sandbox for both tenants; three failed logins each (AP-AUTH-001
    needs five in a minute: it must not count the two tenants together)."""
    events = []
    for n, event_id in enumerate(IDS):
        failed = n % 4 == 1
        events.append(
            normalize_event(
                {
                    "event_id": event_id,
                    "tenant": tenant,
                    "sandbox_id": "sb-1",
                    "ts": now + n * 100,
                    "category": "auth" if failed else "process",
                    "action": "login" if failed else "exec",
                    "outcome": "failure" if failed else "success",
                    "object": "sshd" if failed else f"/usr/bin/tool-{tenant}-{n}",
                    "actor": {"user": "ci"},
                },
                now_ms=now,
            )
        )
    return events


def test_two_tenants_with_the_same_sandbox_names_and_event_ids_stay_apart(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    settings = isolated_settings
    settings.checkpoints.interval_s = 1
    client = provision(settings)
    db = settings.clickhouse.database
    put = run_cli(settings, "inventory", "put", "--sandbox-id", "sb-1", "--tenant", "acme",
                  "--owner", "ana", "--environment", "prod-replica")  # fmt: skip
    assert put.returncode == 0, put.stderr
    now = time.time_ns() // 1_000_000
    acme, globex = activity("acme", now), activity("globex", now)
    collect_events(settings, tmp_path / "spool-acme", acme)
    collect_events(settings, tmp_path / "spool-globex", globex)

    with WorkerProcess(settings):
        wait_for_rows(client, f"{db}.events", 2 * len(IDS))
        # globex replays one of its ids with other content (a rewrite of its history).
        rewritten = {**globex[5], "object": "/tmp/innocent", "prev_hash": None, "hash": None}
        publish_events(settings, [rewritten])
        wait_for_rows(client, f"{db}.deadletter", 1)

    rows = client.query(
        f"SELECT tenant, groupArray(seq), groupUniqArray(owner), groupUniqArray(sandbox_known) "
        f"FROM (SELECT * FROM {db}.events ORDER BY seq) GROUP BY tenant ORDER BY tenant"
    ).result_rows
    assert rows == [
        ("acme", list(range(1, 13)), ["ana"], [True]),  # its own sequence and inventory
        ("globex", list(range(1, 13)), [""], [False]),  # not acme's sandbox record
    ]
    alerts = read_topic(settings)
    rules = sorted((a["rule_id"], a["tenant"]) for a in alerts)
    # No fork or gap from interleaved chains, no brute force from 3 + 3 failures; the
    # rewrite is the one integrity finding.
    assert rules == [("AP-INT-REPLAY", "globex")], rules
    assert scalar(client, f"SELECT reason FROM {db}.deadletter") == "conflicting_duplicate"
    assert scalar(client, f"SELECT event_id FROM {db}.deadletter") == "evt-5"
    assert "/tmp/innocent" in scalar(client, f"SELECT original FROM {db}.deadletter")
