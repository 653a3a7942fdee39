"""Delivery state the ingest role cannot forge: rows claiming offsets that were never
stored (an events row with kafka_offset near 2^64, a progress row without a valid MAC)
make a restarted worker skip nothing."""

from __future__ import annotations

import time
import uuid

import pytest

from pipeline.config import Settings
from pipeline.schema.event import normalize_event
from tests.integration.helpers import (
    WorkerProcess,
    provision,
    publish_events,
    scalar,
    wait_for_metrics,
    wait_for_rows,
)

pytestmark = pytest.mark.integration


def events(n: int, tag: str, first_seq: int) -> list[dict[str, object]]:
    now = time.time_ns() // 1_000_000
    out = []
    for i in range(n):
        fields = {
            "event_id": f"{tag}-{i}-{uuid.uuid4().hex[:8]}",
            "tenant": "acme",
            "sandbox_id": "sb-1",
            "seq": first_seq + i,
            "ts": now + i,
            "category": "api",
            "action": "call",
            "object": f"/v1/{tag}/{i}",
        }
        out.append(normalize_event(fields, now_ms=now))
    return out


def test_forged_progress_rows_make_a_restarted_worker_skip_nothing(
    isolated_settings: Settings,
) -> None:
    settings = isolated_settings
    client = provision(settings)
    db = settings.clickhouse.database
    with WorkerProcess(settings):
        publish_events(settings, events(300, "before", 1))
        wait_for_rows(client, f"{db}.events", 300)
    trusted = client.query(
        f"SELECT kafka_partition, max(max_offset) FROM {db}.events_sink_progress GROUP BY 1"
    ).result_rows
    assert trusted  # the worker's own signed progress

    # What a stolen ingest credential can insert: an events row far past the end of
    # every partition (fed into the progress view), and progress rows near the end.
    for partition in range(3):
        client.command(
            f"INSERT INTO {db}.events (event_id, tenant, sandbox_id, ts, category, action, "
            f"level, outcome, kafka_partition, kafka_offset) VALUES ('forged-{partition}', "
            f"'acme', 'sb-x', now64(3), 'api', 'x', 'info', 'success', {partition}, "
            f"{2**64 - 2})"
        )
        client.command(
            f"INSERT INTO {db}.events_sink_progress (kafka_partition, max_offset, mac) "
            f"VALUES ({partition}, 1000000, repeat('a', 16))"
        )

    publish_events(settings, events(300, "after", 301))  # while no worker runs
    with WorkerProcess(settings):
        wait_for_rows(client, f"{db}.events", 603, timeout=90)
        page = wait_for_metrics(settings, "auditpipe_sink_progress_rejected_total")
    assert scalar(client, f"SELECT count() FROM {db}.events WHERE event_id LIKE 'after-%'") == 300
    rejected = [
        line for line in page.splitlines() if line.startswith("auditpipe_sink_progress_rejected")
    ]
    assert float(rejected[0].split()[-1]) >= 2  # both forged rows of the partition loaded
