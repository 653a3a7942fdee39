"""Fairness on the real path: one sandbox floods at ten times the rate of all the others
together, on the partition they share; the other tenants' alerts stay on time, the flood
raises AP-FLOOD, and every event is stored exactly once, the flood's in its order."""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from pipeline.chain.hashing import chain_key
from pipeline.collect.publisher import EventPublisher, now_ms
from pipeline.config import Settings
from pipeline.forward.source import decode_alert
from pipeline.schema import codec_for
from pipeline.sim.scenarios import reverse_shell_event
from pipeline.sim.simulate import FleetSimulator
from tests.integration.helpers import WorkerProcess, provision, scalar, wait_until

pytestmark = pytest.mark.integration

SECONDS = 12
QUIET_SANDBOXES = 20
QUIET_RATE = 4_000
"""Events/s of all the quiet sandboxes together (20 sandboxes of 5 tenants)."""
FLOOD_RATE = 10 * QUIET_RATE
"""With the quiet ones, more than the worker stores a second (about 28,000 here)."""
FLOOD_MESSAGE = 1_000
ATTACKS_PER_S = 2
ALERT_TARGET_MS = 4_000
"""The other tenants' alert latency, at most (p95): the benchmark's p99 is under 1 s on
an idle machine (docs/benchmarks.md); here a flood, the publisher and the stack share two
cores with the worker. Without the limits the worker falls behind the flood, the quiet
sandboxes' events wait behind it on their partition, and the latency grows with the
backlog (run with fairness.enabled false, the same test measured p95 of several
seconds: docs/benchmarks.md)."""


def attack(n: int, run: str) -> dict[str, Any]:
    """A reverse shell of one of the quiet tenants, each from a sandbox of its own."""
    return reverse_shell_event(str(uuid.uuid4()), f"tenant{n % 5}", f"atk-{run}-{n:04d}", now_ms())


def flood_messages(settings: Settings, template: dict[str, Any]) -> list[bytes]:
    """The flood, encoded beforehand (so that the test can send it fast enough): one
    sandbox, seq 1.., messages of FLOOD_MESSAGE events."""
    codec = codec_for(settings.kafka.schema_registry_url)
    total = FLOOD_RATE * SECONDS
    out = []
    for start in range(0, total, FLOOD_MESSAGE):
        events = [
            template
            | {
                "event_id": f"flood-{n}",
                "tenant": "evil",
                "sandbox_id": "flood",
                "seq": n + 1,
                "ts": now_ms(),
            }
            for n in range(start, start + FLOOD_MESSAGE)
        ]
        batch = {"sandbox_id": "flood", "collector": "t", "sent_at": 0, "events": events}
        out.append(codec.encode("audit_event_batch", batch))
    return out


class AlertArrivals:
    """A consumer of the alerts topic in a thread of its own: when each evidence id's
    alert arrived (stamped on arrival, not when a busy publisher gets to it)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.arrived: dict[str, float] = {}
        self.rules: list[tuple[str, str]] = []
        self.ready = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        codec = codec_for(self.settings.kafka.schema_registry_url)
        consumer = AIOKafkaConsumer(
            self.settings.kafka.topic_alerts,
            bootstrap_servers=self.settings.kafka.bootstrap,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        self.ready.set()
        try:
            while not self.done.is_set():
                batches = await consumer.getmany(timeout_ms=50)
                now = time.time() * 1000
                for records in batches.values():
                    for record in records:
                        alert = decode_alert(codec, record.value or b"") or {}
                        self.rules.append((alert.get("rule_id", ""), alert.get("sandbox_id", "")))
                        for event_id in alert.get("evidence", []):
                            self.arrived.setdefault(event_id, now)
        finally:
            await consumer.stop()


async def publish(settings: Settings, flood: list[bytes], run: str) -> tuple[dict[str, float], int]:
    """Quiet fleet events and attacks through the publisher, the flood's messages through
    a producer of its own, all paced over SECONDS; returns when each attack was sent and
    how many quiet events were."""
    codec = codec_for(settings.kafka.schema_registry_url)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap, linger_ms=5)
    await producer.start()
    sim = FleetSimulator(QUIET_SANDBOXES, tenants=5, seed=8).events(QUIET_RATE * SECONDS)
    emitted: dict[str, float] = {}
    quiet = 0
    key = chain_key("evil", "flood").encode()
    try:
        async with EventPublisher(settings, codec, client_id="fairness-test") as publisher:
            started = time.monotonic()
            flooded = attacked = 0
            while (elapsed := time.monotonic() - started) < SECONDS:
                for event in _take(sim, int(QUIET_RATE * elapsed) - quiet):
                    event["ts"] = now_ms()
                    await publisher.add(event)
                    quiet += 1
                due = min(len(flood), int(FLOOD_RATE * elapsed / FLOOD_MESSAGE) + 1)
                while flooded < due:
                    await producer.send(settings.kafka.topic_events, flood[flooded], key=key)
                    flooded += 1
                while attacked < int(ATTACKS_PER_S * elapsed):
                    event = attack(attacked, run)
                    emitted[event["event_id"]] = time.time() * 1000
                    await publisher.add(event)
                    attacked += 1
                await asyncio.sleep(0.01)
            for message in flood[flooded:]:
                await producer.send(settings.kafka.topic_events, message, key=key)
            await producer.flush()
    finally:
        await producer.stop()
    return emitted, quiet


def _take(stream: Any, n: int) -> list[dict[str, Any]]:
    return [next(stream) for _ in range(max(0, n))]


def what_is_missing(settings: Settings, client: Any, total: int) -> str:
    """Where the events that are not stored are: which sandboxes' and which flood seqs,
    the group's commits against the topics' ends, the dead letters (a failure names the
    stage that lost them, or shows that the worker was still catching up)."""
    db = settings.clickhouse.database
    rows = client.query(
        f"SELECT sandbox_id = 'flood', deferred, count(), uniqExact(event_id) "
        f"FROM {db}.events GROUP BY 1, 2 ORDER BY 1, 2"
    ).result_rows
    seqs = sorted(
        r[0]
        for r in client.query(
            f"SELECT DISTINCT seq FROM {db}.events WHERE sandbox_id = 'flood'"
        ).result_rows
    )
    gaps, expected = [], 1
    for seq in [*seqs, FLOOD_RATE * SECONDS + 1]:
        if seq > expected:
            gaps.append((expected, seq - 1))
        expected = seq + 1
    dead = client.query(f"SELECT reason, count() FROM {db}.deadletter GROUP BY reason").result_rows
    offsets = asyncio.run(_offsets(settings))
    return (
        f"expected {total}; stored (flood, deferred, rows, unique): {rows}; flood seq gaps "
        f"({len(gaps)}): {gaps[:10]}; dead letters: {dead}; "
        f"(committed, end) per partition: {offsets}"
    )


async def _offsets(settings: Settings) -> dict[str, tuple[int | None, int]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka.bootstrap)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(settings.worker.app_id)
        tps = [
            TopicPartition(topic, p)
            for topic in (settings.kafka.topic_events, settings.kafka.topic_deferred)
            for p in range(settings.kafka.partitions)
        ]
        ends = await consumer.end_offsets(tps)
        return {
            f"{tp.topic}[{tp.partition}]": (
                committed[tp].offset if tp in committed else None,
                ends[tp],
            )
            for tp in tps
        }
    finally:
        await consumer.stop()
        await admin.close()


def test_a_flood_is_deferred_others_alert_on_time_and_every_event_is_stored_once(
    isolated_settings: Settings,
) -> None:
    settings = isolated_settings
    settings.kafka.partitions = 1  # everyone behind the flood, the worst case
    settings.fairness.sandbox_events_per_s = 1_000
    settings.fairness.sandbox_burst = 5_000
    client = provision(settings)
    db = settings.clickhouse.database
    template = next(FleetSimulator(1, seed=9).events(1))
    flood = flood_messages(settings, template)
    arrivals = AlertArrivals(settings)
    arrivals.thread.start()
    arrivals.ready.wait(30)
    run = uuid.uuid4().hex[:6]

    with WorkerProcess(settings) as worker:
        emitted, quiet = asyncio.run(publish(settings, flood, run))
        total = quiet + len(emitted) + len(flood) * FLOOD_MESSAGE
        wait_until(
            lambda: scalar(client, f"SELECT count() FROM {db}.events") >= total,
            180,
            "not every event stored",
        )
        drained_ms = time.time() * 1000
        wait_until(lambda: set(emitted) <= set(arrivals.arrived), 30, "attacks not alerted")
        metrics = worker.log()
    arrivals.done.set()

    latencies = sorted(arrivals.arrived[i] - t for i, t in emitted.items())
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    backlog_ms = drained_ms - min(emitted.values())
    print(
        f"other tenants' alert latency over {len(latencies)} attacks: median "
        f"{statistics.median(latencies):.0f} ms, p95 {p95:.0f} ms, max {latencies[-1]:.0f} ms; "
        f"the flood took {backlog_ms:.0f} ms to store"
    )
    # Behind the flood, the others would wait about as long as the flood takes to store;
    # with the limits they do not. On a machine busy with other work both stretch, so the
    # bound is the target or a fifth of the flood's time, whichever is larger (the
    # latency figures themselves are the benchmark's: benchmarks/fairness.py).
    assert p95 <= max(ALERT_TARGET_MS, backlog_ms / 5), (latencies, backlog_ms)

    # Every event stored exactly once; only the flood went the deferred way, in order.
    assert scalar(client, f"SELECT count() FROM {db}.events") == total
    assert scalar(client, f"SELECT uniqExact(event_id) FROM {db}.events") == total
    deferred = client.query(
        f"SELECT sandbox_id, count() FROM {db}.events WHERE deferred GROUP BY sandbox_id"
    ).result_rows
    assert [row[0] for row in deferred] == ["flood"] and deferred[0][1] > total // 2
    assert ("AP-FLOOD", "flood") in arrivals.rules
    assert not [r for r in arrivals.rules if r[0].startswith("AP-INT")], arrivals.rules
    assert scalar(client, f"SELECT count() FROM {db}.alerts WHERE rule_id = 'AP-FLOOD'") == 1, (
        "one flooding alert per interval"
    )
    assert "Traceback" not in metrics


def test_a_worker_killed_during_a_flood_loses_and_doubles_nothing(
    isolated_settings: Settings,
) -> None:
    """kill -9 while messages are being deferred and the deferred topic is being stored:
    the replacement replays both topics from their commits; what the first had stored is
    skipped (each topic's own signed progress), what it had deferred again is absorbed by
    the dedup window."""
    settings = isolated_settings
    settings.kafka.partitions = 2
    settings.fairness.sandbox_events_per_s = 1_000
    settings.fairness.sandbox_burst = 5_000
    settings.worker.session_timeout_s = 6  # the killed member's partitions move sooner
    client = provision(settings)
    db = settings.clickhouse.database
    flood = flood_messages(settings, next(FleetSimulator(1, seed=10).events(1)))
    worker = WorkerProcess(settings).start()

    def kill_and_restart() -> None:
        worker.kill()
        worker.start()

    killer = threading.Timer(SECONDS / 2, kill_and_restart)
    killer.start()
    try:
        emitted, quiet = asyncio.run(publish(settings, flood, uuid.uuid4().hex[:6]))
        killer.join()
        total = quiet + len(emitted) + len(flood) * FLOOD_MESSAGE
        try:
            wait_until(
                lambda: scalar(client, f"SELECT count() FROM {db}.events") >= total,
                240,
                "not every event stored",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{what_is_missing(settings, client, total)}") from None
        time.sleep(3)  # anything stored twice would arrive by now
    finally:
        killer.cancel()
        worker.stop()

    assert scalar(client, f"SELECT count() FROM {db}.events") == total
    assert scalar(client, f"SELECT uniqExact(event_id) FROM {db}.events") == total
    assert scalar(client, f"SELECT count() FROM {db}.events WHERE deferred") > 0
    assert scalar(client, f"SELECT count() FROM {db}.deadletter") == 0
