"""Exactly-once in effect: a worker killed with SIGKILL three times mid-run stores every
event once (no FINAL, no duplicate rows)."""

from __future__ import annotations

import pytest

from pipeline.config import Settings
from pipeline.sim.simulate import FleetSimulator
from tests.integration.helpers import (
    WorkerProcess,
    provision,
    publish_events,
    scalar,
    wait_for_rows,
    wait_until,
)

pytestmark = pytest.mark.integration

EVENTS = 200_000


def test_three_kill_9_store_every_event_exactly_once(isolated_settings: Settings) -> None:
    settings = isolated_settings
    settings.worker.take_messages = 32  # many small batches: the kills land mid-stream
    settings.worker.stall_timeout_s = 15
    # A killed member holds its partitions until its session times out: the least the
    # broker allows, so the next worker takes over sooner.
    settings.worker.session_timeout_s = 6
    client = provision(settings)
    table = f"{settings.clickhouse.database}.events"
    events = list(FleetSimulator(60, seed=21).events(EVENTS))
    publish_events(settings, events)

    stored_at_kill = []
    for n, threshold in enumerate((EVENTS // 6, EVENTS // 2, 5 * EVENTS // 6)):
        worker = WorkerProcess(settings, name=f"worker-{n}").start()
        wait_until(
            lambda t=threshold: scalar(client, f"SELECT count() FROM {table}") >= t,
            180,
            f"worker {n} did not store {threshold} events",
        )
        worker.kill()  # SIGKILL: no graceful finish, no commit
        stored_at_kill.append(scalar(client, f"SELECT count() FROM {table}"))

    with WorkerProcess(settings, name="worker-final"):
        wait_for_rows(client, table, EVENTS, timeout=240)

    assert all(s < EVENTS for s in stored_at_kill), stored_at_kill
    assert scalar(client, f"SELECT count() FROM {table}") == EVENTS
    assert scalar(client, f"SELECT uniqExact(event_id) FROM {table}") == EVENTS
