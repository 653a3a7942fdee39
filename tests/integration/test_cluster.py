"""On a three-broker KRaft cluster (replication factor 3, min.insync.replicas 2, acks=all),
two workers sharing the partitions: a broker killed with -9 mid-stream and started again,
and a worker frozen (SIGSTOP) past its session timeout and resumed; in each, every event
sent is stored exactly once (count = distinct ids = sent)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.collect.publisher import EventPublisher
from pipeline.config import Settings
from pipeline.schema import codec_for
from pipeline.sim.simulate import FleetSimulator
from pipeline.stack.cluster import KafkaCluster
from tests.conftest import TEST_STACK_HOME, free_port
from tests.integration.helpers import WorkerProcess, provision, scalar, wait_for_rows, wait_until

pytestmark = pytest.mark.integration

EVENTS = 100_000


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    made = KafkaCluster(tmp_path_factory.mktemp("cluster"), TEST_STACK_HOME / "kafka" / "libs")
    try:
        made.up()
        yield made
    finally:
        made.down()


def on_cluster(settings: Settings, cluster: KafkaCluster) -> Settings:
    data = settings.model_dump()
    data["kafka"] |= {"bootstrap": cluster.bootstrap, "replication_factor": 3, "partitions": 4}
    data["publish"] |= {"batch_events": 200}
    data["worker"] |= {"take_messages": 8, "stall_timeout_s": 30, "session_timeout_s": 6}
    return Settings(**data)


def second(settings: Settings) -> Settings:
    data = settings.model_dump()
    data["home"] = settings.home.parent / "home-b"
    data["worker"]["web_port"] = free_port()
    # Workers of one group share the key that signs progress and keys insert tokens.
    data["checkpoints"]["key_file"] = settings.home / "checkpoint.key"
    return Settings(**data)


class PacedPublisher(threading.Thread):
    """Sends the events over about ``seconds`` (acks=all), so faults land mid-stream."""

    def __init__(self, settings: Settings, seconds: float) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        self.seconds = seconds
        self.events = list(FleetSimulator(40, seed=31).events(EVENTS))
        for event in self.events:
            event["event_id"] = str(uuid.uuid4())
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._send())
        except BaseException as exc:  # the test reports it
            self.error = exc

    async def _send(self) -> None:
        codec = codec_for(self.settings.kafka.schema_registry_url)
        step = 2_000
        pause = self.seconds / (len(self.events) / step)
        async with EventPublisher(self.settings, codec, client_id="cluster-test") as publisher:
            for start in range(0, len(self.events), step):
                await publisher.add_many(self.events[start : start + step])
                await asyncio.sleep(pause)


def exactly_once(client: object, settings: Settings, sender: PacedPublisher) -> None:
    sender.join(240)
    assert sender.error is None, sender.error
    table = f"{settings.clickhouse.database}.events"
    wait_for_rows(client, table, EVENTS, timeout=240)  # type: ignore[arg-type]
    time.sleep(3)  # a row stored twice would be there by now
    stored = scalar(client, f"SELECT count() FROM {table}")  # type: ignore[arg-type]
    assert stored == EVENTS, (stored, doubled(client, table))
    assert scalar(client, f"SELECT uniqExact(event_id) FROM {table}") == EVENTS  # type: ignore[arg-type]


def doubled(client: Any, table: str) -> list[tuple[Any, ...]]:
    """Where rows stored twice came from: partition, offsets, parts, insert times."""
    return list(
        client.query(
            f"SELECT kafka_partition, min(kafka_offset), max(kafka_offset), count(), "
            f"groupUniqArray(_part) FROM (SELECT event_id, any(kafka_partition) AS "
            f"kafka_partition, any(kafka_offset) AS kafka_offset, arrayJoin(groupArray(_part)) "
            f"AS _part FROM {table} GROUP BY event_id HAVING count() > 1) "
            f"GROUP BY kafka_partition"
        ).result_rows
    )


@contextlib.contextmanager
def two_workers_streaming(
    cluster: KafkaCluster, isolated_settings: Settings
) -> Iterator[tuple[WorkerProcess, WorkerProcess]]:
    """Two workers on the cluster while events stream in, rows already stored; yields
    the workers for a fault, then checks that every event is stored exactly once."""
    settings = on_cluster(isolated_settings, cluster)
    client = provision(settings)
    table = f"{settings.clickhouse.database}.events"
    sender = PacedPublisher(settings, seconds=20)
    with (
        WorkerProcess(settings, name="worker-a") as a,
        WorkerProcess(second(settings), name="worker-b") as b,
    ):
        sender.start()
        wait_until(lambda: scalar(client, f"SELECT count() FROM {table}") > 10_000, 120, "no rows")
        yield a, b
        exactly_once(client, settings, sender)


def test_a_broker_killed_mid_stream_and_restarted_loses_and_doubles_nothing(
    cluster: KafkaCluster, isolated_settings: Settings
) -> None:
    with two_workers_streaming(cluster, isolated_settings) as (a, _):
        cluster.kill(0)  # kill -9 a broker (and controller) mid-stream
        time.sleep(8)
        cluster.start(0)
    assert "Traceback" not in a.log()


def test_a_worker_frozen_past_its_session_is_replaced_and_resumes_without_doubles(
    cluster: KafkaCluster, isolated_settings: Settings
) -> None:
    """Without worker/fence.py, the frozen worker's batch was stored a second time; with
    it alone, a few rows in some runs (an insert sent on resuming before the consumer
    found its session gone, or one frozen mid-body): outputs/clickhouse/fencing.py."""
    with two_workers_streaming(cluster, isolated_settings) as (_, b):
        assert b.proc is not None
        os.kill(b.proc.pid, signal.SIGSTOP)  # frozen: no heartbeat, holds its batch
        time.sleep(b.settings.worker.session_timeout_s * 1.5)
        os.kill(b.proc.pid, signal.SIGCONT)  # it comes back after its partitions moved


def test_the_cluster_has_three_brokers(cluster: KafkaCluster) -> None:
    assert len(cluster.bootstrap.split(",")) == 3
    assert all(
        Path(b.properties).read_text().count("min.insync.replicas=2") for b in cluster.brokers
    )
