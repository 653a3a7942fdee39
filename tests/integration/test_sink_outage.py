"""ClickHouse down for 30 s in the middle of a run: the worker retries and pauses, and
every event arrives once the server is back (a private server, stopped and restarted)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.sim.simulate import FleetSimulator
from pipeline.stack.clickhouse import ClickHouseServer
from tests.conftest import free_ports
from tests.integration.helpers import (
    WorkerProcess,
    provision,
    publish_events,
    scalar,
    wait_for_rows,
    wait_until,
)

pytestmark = pytest.mark.integration

EVENTS = 60_000


def test_clickhouse_down_for_30_s_loses_nothing(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    http, tcp = free_ports(2)
    server = ClickHouseServer(
        Settings(
            home=tmp_path / "ch", stack={"clickhouse_http_port": http, "clickhouse_tcp_port": tcp}
        )
    )
    server.start()
    server.wait_ready()
    try:
        settings = isolated_settings
        settings.clickhouse.url = server.endpoint
        settings.sink.retry_max_s = 2.0
        client = provision(settings)
        table = f"{settings.clickhouse.database}.events"
        events = list(FleetSimulator(30, seed=8).events(EVENTS))
        with WorkerProcess(settings) as worker:
            publish_events(settings, events[: EVENTS // 2])
            wait_for_rows(client, table, EVENTS // 2)
            assert server.process.stop()
            publish_events(settings, events[EVENTS // 2 :])  # published while down
            time.sleep(30)
            assert worker.proc is not None and worker.proc.poll() is None, "the worker died"
            wait_until(lambda: "failed (attempt" in worker.log(), 5, "no insert was retried")
            server.start()
            server.wait_ready()
            client = provision(settings)  # a new connection; the tables are there
            wait_for_rows(client, table, EVENTS, timeout=120)
        assert scalar(client, f"SELECT count() FROM {table}") == EVENTS
        assert scalar(client, f"SELECT uniqExact(event_id) FROM {table}") == EVENTS
    finally:
        server.process.stop()
