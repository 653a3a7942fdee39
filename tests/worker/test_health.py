"""What /healthz and /readyz decide (``worker/health.py``); served by a real worker in
tests/integration/test_health.py."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition

from pipeline.worker.health import CHECK_STALE_S, Health


def health(
    assigned: list[TopicPartition], ping: Any = lambda: True, **watch: Any
) -> tuple[Health, SimpleNamespace, threading.Event]:
    now = time.monotonic()
    watchdog = SimpleNamespace(
        checked_at=now, last_batch_at=now, stall_s=60.0, kicked=False, **watch
    )
    app = SimpleNamespace(
        consumer=SimpleNamespace(assignment=lambda: set(assigned)), rebalancing=False
    )
    stopping = threading.Event()
    return Health(app, "ev", watchdog, stopping, ping), watchdog, stopping  # type: ignore[arg-type]


def test_live_until_the_watchdog_stops_checking_or_the_consumer_stalls() -> None:
    checked, watchdog, _ = health([])
    assert checked.live()[0]
    watchdog.checked_at = time.monotonic() - CHECK_STALE_S - 1
    ok, body = checked.live()
    assert not ok and body["status"] == "unhealthy"
    watchdog.checked_at = time.monotonic()
    watchdog.last_batch_at = time.monotonic() - 61
    watchdog.kicked = True  # messages wait and no batch came: a stall
    ok, body = checked.live()
    assert not ok and body["stalled"]


def test_ready_needs_partitions_of_the_events_topic_clickhouse_and_not_stopping() -> None:
    held = [TopicPartition("ev", 2), TopicPartition("other", 0)]
    checked, _, stopping = health(held)
    ok, body = asyncio.run(checked.ready())
    assert ok and body["partitions"] == [2]
    stopping.set()
    assert not asyncio.run(checked.ready())[0]

    standby, _, _ = health([TopicPartition("other", 0)])
    ok, body = asyncio.run(standby.ready())
    assert not ok and body["partitions"] == []


def test_clickhouse_not_answering_is_not_ready_and_pings_are_spaced() -> None:
    calls = []

    def down() -> bool:
        calls.append(1)
        raise ConnectionError("refused")

    checked, _, _ = health([TopicPartition("ev", 0)], ping=down)
    for _ in range(3):
        ok, body = asyncio.run(checked.ready())
        assert not ok and body["clickhouse"] is False
    assert len(calls) == 1, "one ping per PING_EVERY_S, however often it is asked"
