"""A compromised sandbox cannot halt the pipeline with values that fit Avro but not
storage: each such event is dead-lettered with its reason; every other event of every
tenant is stored, and the worker keeps going."""

from __future__ import annotations

import copy
import time
import uuid
from typing import Any

import pytest

from pipeline.config import Settings
from pipeline.outputs.clickhouse import ClickHouseSink, InsertService
from pipeline.outputs.clickhouse.client import connect
from pipeline.schema.event import normalize_event
from tests.integration.helpers import (
    WorkerProcess,
    provision,
    publish_events,
    scalar,
    wait_for_rows,
)

pytestmark = pytest.mark.integration

DAY_MS = 86_400_000


def good(tenant: str, sandbox: str, n: int) -> dict[str, Any]:
    now = time.time_ns() // 1_000_000
    return normalize_event(
        {
            "event_id": f"{tenant}-{sandbox}-{n}-{uuid.uuid4().hex[:6]}",
            "tenant": tenant,
            "sandbox_id": sandbox,
            "seq": n + 1,
            "ts": now - 1000 + n,
            "category": "process",
            "action": "exec",
            "actor": {"user": "ci", "uid": 1000, "pid": 4242, "ppid": 1},
            "object": "/usr/bin/make",
            "bytes": 10,
        },
        now_ms=now,
    )


def poisoned(base: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(expected reason, event) for every column's edge the attacker can pick."""
    now = time.time_ns() // 1_000_000

    def variant(change: Any) -> dict[str, Any]:
        event = copy.deepcopy(base)
        event["event_id"] = f"bad-{uuid.uuid4().hex}"
        change(event)
        return event

    return [
        ("out_of_range", variant(lambda e: e["actor"].update(uid=2**32))),
        ("out_of_range", variant(lambda e: e["actor"].update(pid=2**40))),
        ("out_of_range", variant(lambda e: e["actor"].update(ppid=-1))),
        ("out_of_range", variant(lambda e: e.update(seq=-7))),
        ("out_of_range", variant(lambda e: e.update(bytes=-(2**63)))),
        ("ts_too_old", variant(lambda e: e.update(ts=now - 40 * 365 * DAY_MS))),
        ("ts_too_old", variant(lambda e: e.update(ts=-(2**62)))),
        ("ts_in_future", variant(lambda e: e.update(ts=2**62))),
        ("oversized_field", variant(lambda e: e.update(tenant="t" * 5000))),
        ("oversized_field", variant(lambda e: e["attributes"].update({"k" * 4000: "v"}))),
    ]


def test_every_out_of_range_value_between_good_events_is_dead_lettered(
    isolated_settings: Settings,
) -> None:
    settings = isolated_settings
    client = provision(settings)
    db = settings.clickhouse.database
    batch: list[dict[str, Any]] = []
    bad_reasons: list[str] = []
    for n in range(30):  # two tenants, the same sandbox names
        for tenant in ("acme", "globex"):
            batch.append(good(tenant, f"sb-{n % 3}", n))
        if n % 3 == 0:
            for reason, event in poisoned(good("acme", "sb-0", n)):
                batch.append(event)
                bad_reasons.append(reason)
    good_count = len(batch) - len(bad_reasons)

    with WorkerProcess(settings):
        publish_events(settings, batch)
        wait_for_rows(client, f"{db}.events", good_count, timeout=60)
        wait_for_rows(client, f"{db}.deadletter", len(bad_reasons), timeout=60)
        # Nothing stalls: what comes after is stored too.
        publish_events(settings, [good("globex", "sb-9", n) for n in range(20)])
        wait_for_rows(client, f"{db}.events", good_count + 20, timeout=60)

    stored_bad = scalar(client, f"SELECT count() FROM {db}.events WHERE event_id LIKE 'bad-%'")
    assert stored_bad == 0
    reasons = sorted(r[0] for r in client.query(f"SELECT reason FROM {db}.deadletter").result_rows)
    assert reasons == sorted(bad_reasons)
    assert scalar(client, f"SELECT count() FROM {db}.deadletter WHERE detail = ''") == 0


@pytest.mark.parametrize("fenced", [False, True], ids=["plain", "fenced"])
def test_the_sink_dead_letters_rows_clickhouse_refuses_and_stores_the_rest(
    isolated_settings: Settings, fenced: bool
) -> None:
    """Behind validation, the sink's own guard: a block the real server (client) refuses
    for its data is split; only the bad rows go to the rejection handler, no retries.
    A worker's inserts take the fenced path (``fencing.send_insert``): the same holds."""
    settings = isolated_settings
    client = provision(settings)
    db = settings.clickhouse.database
    asked: list[int] = []
    service = InsertService(
        lambda: connect(settings.clickhouse),
        retry_initial_s=0.01,
        fence=(lambda: asked.append(1)) if fenced else None,
    )
    rejected: list[tuple[int, str]] = []
    sink = ClickHouseSink(
        service,
        table=f"{db}.events",
        max_rows=10_000,
        max_bytes=1 << 30,
        on_rejected=lambda events, why: rejected.extend((e["kafka_offset"], why) for e in events),
    )
    events = []
    for offset in range(200):
        event = good("acme", "sb-1", offset)
        event.update(kafka_partition=0, kafka_offset=offset)
        events.append(event)
    events[13]["actor"]["uid"] = 2**32  # UInt32 column
    events[150]["kafka_partition"] = 70_000  # UInt16 column
    for event in events:
        sink.add(event["kafka_partition"], [event], size_bytes=100)

    sink.flush()

    assert sorted(offset for offset, _ in rejected) == [13, 150]
    assert scalar(client, f"SELECT count() FROM {db}.events") == 198
    assert service.retries_total == 0
    assert bool(asked) == fenced  # asked before each insert that was sent
