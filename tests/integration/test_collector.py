"""Collectors on a real broker: crash, rotation, truncation and outage lose nothing,
publish nothing twice, and keep each sandbox's seq and hash chain continuous."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from pipeline.chain.hashing import GENESIS, link
from pipeline.collect.collector import Collector
from pipeline.commands.init import create_topics
from pipeline.config import Settings
from pipeline.schema import codec_for
from pipeline.sim.simulate import FleetSimulator
from pipeline.stack.kafka import KafkaBroker
from tests.conftest import TEST_STACK_HOME, free_ports
from tests.integration.helpers import child_env, wait_until

pytestmark = pytest.mark.integration


async def _read_events(settings: Settings, expected: int, wait_s: float) -> list[dict[str, Any]]:
    codec = codec_for(settings.kafka.schema_registry_url)
    consumer = AIOKafkaConsumer(
        settings.kafka.topic_events,
        bootstrap_servers=settings.kafka.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + wait_s
    try:
        while len(events) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    events.extend(codec.decode(record.value).record["events"])
        extra = await consumer.getmany(timeout_ms=1500)  # anything more is a duplicate
        for records in extra.values():
            for record in records:
                events.extend(codec.decode(record.value).record["events"])
    finally:
        await consumer.stop()
    return events


def read_events(settings: Settings, expected: int, timeout: float = 120) -> list[dict[str, Any]]:
    return asyncio.run(_read_events(settings, expected, timeout))


def assert_chains_continuous(events: list[dict[str, Any]]) -> None:
    """Per sandbox, in topic order: seq 1, 2, 3, ... and each hash links to the last."""
    by_sandbox: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        by_sandbox[event["sandbox_id"]].append(event)
    for sandbox, chain in by_sandbox.items():
        assert [e["seq"] for e in chain] == list(range(1, len(chain) + 1)), sandbox
        previous = GENESIS
        for event in chain:
            assert event["prev_hash"] == previous, (sandbox, event["seq"])
            assert event["hash"] == link(previous, event), (sandbox, event["seq"])
            previous = event["hash"]


def collector_settings(settings: Settings, sandbox: str) -> Settings:
    settings.collect.sandbox_id = sandbox
    settings.collect.tenant = "acme"
    settings.publish.linger_ms = 20
    asyncio.run(create_topics(settings))
    return settings


def start_collect(settings: Settings, source: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipeline.cli",
                "collect",
                "--source",
                source,
                "--follow",
                "--name",
                "follow-test",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=child_env(settings),
        )


def line(n: int) -> bytes:
    return (
        orjson.dumps(
            {"category": "file", "action": "read", "object": f"/data/{n}", "ts": 1795860000000 + n}
        )
        + b"\n"
    )


def test_kill_9_while_following_a_growing_file_loses_and_repeats_nothing(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    settings = collector_settings(isolated_settings, "sb-follow")
    source = tmp_path / "app.jsonl"
    source.write_bytes(b"".join(line(n) for n in range(1, 1001)))
    total = 12_000
    written = [1000]

    def writer() -> None:  # the file keeps growing while the collector is killed
        with source.open("ab") as out:
            while written[0] < total:
                chunk = range(written[0] + 1, min(total, written[0] + 500) + 1)
                out.write(b"".join(line(n) for n in chunk))
                out.flush()
                written[0] = chunk[-1]
                time.sleep(0.45)  # ~10 s in all: the kills land while it grows

    log = tmp_path / "collect.log"
    threading.Thread(target=writer, daemon=True).start()
    for _ in range(3):
        proc = start_collect(settings, f"jsonl:{source}", log)
        time.sleep(2.0)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    lines_then = written[0]
    before_restart = len(read_events(settings, total, timeout=2))
    wait_until(lambda: written[0] >= total, 60, "writer did not finish")
    proc = start_collect(settings, f"jsonl:{source}", log)
    try:
        events = read_events(settings, total)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)

    # The killed collectors had published part of the file, not all of it.
    assert 0 < before_restart < total and lines_then < total
    objects = [e["object"] for e in events]
    assert len(objects) == total, f"{len(objects)} events for {total} lines"
    assert sorted(objects, key=lambda o: int(o.rsplit("/", 1)[1])) == [
        f"/data/{n}" for n in range(1, total + 1)
    ]
    assert_chains_continuous(events)


def test_rotation_and_truncation_of_a_followed_file(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    settings = collector_settings(isolated_settings, "sb-rotate")
    source = tmp_path / "app.log"
    source.write_bytes(b"".join(line(n) for n in range(1, 1001)))
    proc = start_collect(settings, f"jsonl:{source}", tmp_path / "collect.log")
    try:
        assert len(read_events(settings, 1000, timeout=60)) == 1000
        # logrotate's default: rename, then a new file; the writer still appends to the
        # old one until it reopens.
        rotated = tmp_path / "app.log.1"
        os.rename(source, rotated)
        with rotated.open("ab") as old:
            old.write(b"".join(line(n) for n in range(1001, 1101)))
        source.write_bytes(b"".join(line(n) for n in range(1101, 2001)))
        assert len(read_events(settings, 2000, timeout=60)) == 2000
        # copytruncate: the file shrinks to nothing and is written again.
        with source.open("r+b") as current:
            current.truncate(0)
        with source.open("ab") as current:
            current.write(b"".join(line(n) for n in range(2001, 2501)))
        events = read_events(settings, 2500, timeout=60)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert sorted(int(e["object"].rsplit("/", 1)[1]) for e in events) == list(range(1, 2501))
    assert_chains_continuous(events)


@pytest.fixture
def private_broker(tmp_path: Path) -> Any:
    home = tmp_path / "broker"
    libs = TEST_STACK_HOME / "kafka" / "libs"
    if libs.exists():
        (home / "kafka").mkdir(parents=True)
        (home / "kafka" / "libs").symlink_to(libs)
    port, controller_port = free_ports(2)
    settings = Settings(
        home=home,
        kafka={"bootstrap": f"127.0.0.1:{port}", "partitions": 3},
        stack={"kafka_port": port, "kafka_controller_port": controller_port, "kafka_heap": "512m"},
    )
    broker = KafkaBroker(settings)
    broker.start()
    broker.wait_ready()
    yield settings, broker
    broker.process.stop()


def test_broker_down_for_30_s_every_event_arrives_in_order(
    private_broker: Any, tmp_path: Path
) -> None:
    settings, broker = private_broker
    settings.publish.linger_ms = 50
    asyncio.run(create_topics(settings))
    sim = FleetSimulator(10, seed=5)
    emitted = 0
    most_behind = 0  # committed to the spool but not yet acknowledged by Kafka

    async def produce() -> Collector:
        nonlocal emitted, most_behind
        async with Collector(settings, spool_dir=tmp_path / "spool") as collector:
            started = time.monotonic()
            events = sim.events(1 << 30)
            outage_started = False
            while time.monotonic() - started < 42:
                elapsed = time.monotonic() - started
                if elapsed > 4 and not outage_started:
                    outage_started = True
                    await asyncio.to_thread(broker.process.stop)  # down for 30 s
                    asyncio.get_running_loop().call_later(30, _restart, broker)
                for _ in range(100):  # 1,000 events/s
                    await collector.emit(next(events))
                    emitted += 1
                stats = collector.stats
                most_behind = max(most_behind, stats.committed - stats.delivered)
                await asyncio.sleep(0.1)
            await asyncio.wait_for(collector.flush(), 120)
            return collector

    collector = asyncio.run(produce())
    events = read_events(settings, emitted)

    # During the outage the events waited in the spool: ~30 s at 1,000 events/s.
    assert most_behind > 20_000
    assert collector.stats.delivered + collector.stats.already_delivered == emitted
    assert len(events) == emitted
    assert len({e["event_id"] for e in events}) == emitted
    assert_chains_continuous(events)


def _restart(broker: KafkaBroker) -> None:
    threading.Thread(target=lambda: (broker.start(), broker.wait_ready()), daemon=True).start()
