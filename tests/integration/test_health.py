"""The worker's /healthz and /readyz, and a SIGTERM under load: the worker stores and
commits what it holds and exits 0 in its grace period, and its replacement processes no
message a second time."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from pipeline.collect.publisher import EventPublisher
from pipeline.config import Settings
from pipeline.schema import codec_for
from pipeline.sim.simulate import FleetSimulator
from tests.conftest import free_port
from tests.integration.helpers import WorkerProcess, provision, scalar, wait_for_rows, wait_until

pytestmark = pytest.mark.integration


def get(settings: Settings, path: str) -> tuple[int, dict[str, Any]]:
    url = f"http://127.0.0.1:{settings.worker.web_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def other_worker(settings: Settings, name: str) -> Settings:
    data = settings.model_dump()
    data["home"] = settings.home.parent / f"home-{name}"
    data["worker"]["web_port"] = free_port()
    # Workers of one group share the key that signs progress and keys insert tokens.
    data["checkpoints"]["key_file"] = settings.home / "checkpoint.key"
    return Settings(**data)


def test_ready_means_partitions_held_and_clickhouse_answering(isolated_settings: Settings) -> None:
    settings = isolated_settings
    settings.kafka.partitions = 1
    provision(settings)
    standby_settings = other_worker(settings, "b")
    with WorkerProcess(settings, name="worker-a"):
        wait_until(lambda: get(settings, "/readyz")[0] == 200, 60, "worker a never ready")
        status, body = get(settings, "/readyz")
        assert body == {
            "status": "ready",
            "partitions": [0],
            "clickhouse": True,
            "rebalancing": False,
            "stopping": False,
        }
        with WorkerProcess(standby_settings, name="worker-b"):
            # One partition, two workers: one holds it, the other is a live standby.
            def one_each() -> bool:
                codes = sorted(get(s, "/readyz")[0] for s in (settings, standby_settings))
                return codes == [200, 503]

            wait_until(one_each, 60, "not exactly one worker ready")
            for each in (settings, standby_settings):
                status, body = get(each, "/healthz")
                assert status == 200 and body["status"] == "ok", body
            ready = [get(s, "/readyz")[1] for s in (settings, standby_settings)]
            assert sorted(r["partitions"] for r in ready) == [[], [0]]


def test_sigterm_under_load_stores_commits_and_exits_0_and_nothing_is_processed_twice(
    isolated_settings: Settings,
) -> None:
    settings = isolated_settings
    settings.publish.batch_events = 200
    settings.worker.take_messages = 8
    settings.worker.shutdown_grace_s = 20
    client = provision(settings)
    table = f"{settings.clickhouse.database}.events"
    events = list(FleetSimulator(40, seed=21).events(100_000))
    sigterm_sent = threading.Event()
    done = threading.Event()
    published: list[int] = [0]

    async def publish_paced() -> None:
        codec = codec_for(settings.kafka.schema_registry_url)
        async with EventPublisher(settings, codec) as publisher:
            # About 5,000 events/s until 2 s after the SIGTERM: messages keep coming
            # while the worker stops, however slowly it started.
            after_sigterm = 20
            for start in range(0, len(events), 500):
                await publisher.add_many(events[start : start + 500])
                published[0] = start + 500
                if sigterm_sent.is_set():
                    after_sigterm -= 1
                    if not after_sigterm:
                        break
                await asyncio.sleep(0.1)

    publisher = threading.Thread(target=lambda: (asyncio.run(publish_paced()), done.set()))
    first = WorkerProcess(settings, name="worker-1").start()
    wait_until(lambda: get(settings, "/readyz")[0] == 200, 120, "worker 1 never ready")
    publisher.start()
    wait_until(
        lambda: scalar(client, f"SELECT count() FROM {table}") > 5_000, 120, "nothing stored"
    )
    assert not done.is_set(), "the load ended before the SIGTERM"
    started = time.monotonic()
    sigterm_sent.set()
    assert first.stop() == 0  # SIGTERM while messages keep coming
    stopped_in = time.monotonic() - started
    assert stopped_in < 2 * settings.worker.shutdown_grace_s, stopped_in
    stored_at_stop = scalar(client, f"SELECT count() FROM {table}")

    with WorkerProcess(settings, name="worker-2") as second:
        publisher.join(120)
        assert done.is_set()
        sent = published[0]
        assert stored_at_stop < sent
        wait_for_rows(client, table, sent, timeout=180)
        log = second.log()
    # Every message the first stored was committed: none was consumed again.
    assert "stored before a restart" not in log, log[-3000:]
    assert scalar(client, f"SELECT count() FROM {table}") == sent
    assert scalar(client, f"SELECT uniqExact(event_id) FROM {table}") == sent
