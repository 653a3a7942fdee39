"""Alert latency: from publish to alert on the topic, at half the worker's maximum load.

    python benchmarks/alert_latency.py [--max-events 300000] [--seconds 30] [--runs 3]

Needs the local stack (`auditpipe stack up`) or AUDITPIPE_KAFKA_BOOTSTRAP /
AUDITPIPE_CLICKHOUSE_URL. Each run, with the default rule pack on:

1. maximum load: --max-events simulated events published beforehand, then a real
   ``auditpipe worker`` started; events/s from its start to the last row stored;
2. latency: a fresh worker on a fresh topic, fed benign fleet events paced at half that
   rate, with --attacks-per-s reverse-shell events mixed in, each from its own sandbox (so
   none is suppressed). A consumer process of its own on audit.alerts notes when each
   attack's alert arrives; latency = arrival - the moment the attack event was handed to
   the publisher (its linger included). p50, p99 and max over the attacks, and how many alerted.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.e2e import isolated, measure_worker
from pipeline.collect.publisher import EventPublisher, now_ms
from pipeline.commands.init import apply_migrations, create_topics, load_migrations
from pipeline.config import Settings, load_settings
from pipeline.forward.source import decode_alert
from pipeline.outputs.clickhouse.client import connect
from pipeline.schema import codec_for
from pipeline.sim.scenarios import reverse_shell_event
from pipeline.sim.simulate import FleetSimulator
from tests.conftest import free_port
from tests.integration.helpers import WorkerProcess


def attack(n: int, run_id: str) -> dict[str, Any]:
    return reverse_shell_event(str(uuid.uuid4()), "acme", f"atk-{run_id}-{n:05d}", now_ms())


async def consume_alerts(bootstrap: str, topic: str, out_path: str) -> None:
    """The consumer process: appends "event_id arrival_ms" per evidence id as alerts arrive.

    It runs apart from the publisher, so arrivals are stamped when they arrive, not when
    a busy publishing loop gets around to it.
    """
    codec = codec_for(load_settings().kafka.schema_registry_url)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        with open(out_path, "a", buffering=1) as out:  # noqa: ASYNC230 - opened once
            while True:
                batches = await consumer.getmany(timeout_ms=100)
                now = time.time() * 1000
                for records in batches.values():
                    for record in records:
                        alert = decode_alert(codec, record.value or b"")
                        for event_id in (alert or {}).get("evidence", []):
                            out.write(f"{event_id} {now:.1f}\n")
    finally:
        await consumer.stop()


def read_arrivals(path: Path) -> dict[str, float]:
    arrived: dict[str, float] = {}
    for line in path.read_text().splitlines():
        event_id, _, when = line.partition(" ")
        arrived.setdefault(event_id, float(when))
    return arrived


async def measure_latency(
    settings: Settings, rate: float, seconds: float, attacks_per_s: float, sandboxes: int
) -> tuple[float, float, float, int, int]:
    sim = FleetSimulator(sandboxes, seed=4)
    emitted: dict[str, float] = {}
    arrivals = settings.home / "arrivals.txt"
    arrivals.touch()
    consumer = subprocess.Popen(  # noqa: ASYNC220 - started once, not awaited
        [sys.executable, __file__, "--consume", settings.kafka.bootstrap,
         settings.kafka.topic_alerts, str(arrivals)],
    )  # fmt: skip
    await asyncio.sleep(3)  # the consumer has joined
    tick = 0.01
    total = int(rate * seconds)
    attacks = int(attacks_per_s * seconds)
    async with EventPublisher(
        settings, codec_for(settings.kafka.schema_registry_url), client_id="bench-alerts"
    ) as publisher:
        stream = sim.events(total)
        started = time.monotonic()
        sent = attacked = 0
        while sent < total:
            elapsed = time.monotonic() - started
            due = min(total, int(rate * (elapsed + tick)))
            while sent < due:
                event = next(stream)
                event["ts"] = now_ms()
                await publisher.add(event)
                sent += 1
            while attacked < min(attacks, int(attacks_per_s * elapsed)):
                event = attack(attacked, sim.run_id)
                emitted[event["event_id"]] = time.time() * 1000
                await publisher.add(event)
                attacked += 1
            await asyncio.sleep(tick)
    for _ in range(150):  # up to 30 s for the last alerts
        arrived = read_arrivals(arrivals)
        if set(emitted) <= set(arrived):
            break
        await asyncio.sleep(0.2)  # the consumer process fills the file
    consumer.terminate()
    consumer.wait()
    latencies = sorted(arrived[i] - t for i, t in emitted.items() if i in arrived)
    if not latencies:
        raise RuntimeError("no attack raised an alert")
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    return statistics.median(latencies), p99, latencies[-1], len(latencies), len(emitted)


def one_run(base: Settings, args: argparse.Namespace, run: int) -> dict[str, float]:
    tag = uuid.uuid4().hex[:8]
    home = Path(tempfile.mkdtemp(prefix=f"auditpipe-alerts-{tag}-"))
    settings = isolated(base, tag, home)
    settings.worker.web_port = free_port()
    client = connect(settings.clickhouse)
    latency_settings = isolated(base, tag + "l", home)
    latency_settings.worker.web_port = free_port()
    try:
        for s in (settings, latency_settings):
            asyncio.run(create_topics(s))
            apply_migrations(client, s.clickhouse.database, load_migrations())
        print(
            f"run {run}: publishing {args.max_events:,} events for the maximum load ...", flush=True
        )

        async def prepublish() -> None:
            async with EventPublisher(
                settings, codec_for(settings.kafka.schema_registry_url)
            ) as publisher:
                await publisher.add_many(
                    FleetSimulator(args.sandboxes, seed=1).events(args.max_events)
                )

        asyncio.run(prepublish())
        maximum, _ = measure_worker(settings, client, args.max_events)
        rate = maximum / 2
        print(
            f"run {run}: maximum {maximum:,.0f} events/s; latency at {rate:,.0f} events/s ...",
            flush=True,
        )
        with WorkerProcess(latency_settings, name="latency-worker"):
            p50, p99, worst, alerted, attacks = asyncio.run(
                measure_latency(
                    latency_settings, rate, args.seconds, args.attacks_per_s, args.sandboxes
                )
            )
    finally:
        for s in (settings, latency_settings):
            client.command(f"DROP DATABASE IF EXISTS {s.clickhouse.database}")
        shutil.rmtree(home, ignore_errors=True)
    figures = {
        "max_events_per_s": maximum,
        "load_events_per_s": rate,
        "p50_ms": p50,
        "p99_ms": p99,
        "max_ms": worst,
        "alerted": float(alerted),
        "attacks": float(attacks),
    }
    print(f"run {run}: " + ", ".join(f"{k}={v:,.1f}" for k, v in figures.items()), flush=True)
    return figures


def main() -> None:
    if sys.argv[1:2] == ["--consume"]:
        asyncio.run(consume_alerts(*sys.argv[2:5]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-events", type=int, default=300_000)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--attacks-per-s", type=float, default=10)
    parser.add_argument("--sandboxes", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    base = load_settings()
    results = [one_run(base, args, run) for run in range(1, args.runs + 1)]
    print(f"\nmedians of {args.runs} runs:")
    print("| figure | median | runs |")
    print("|---|---|---|")
    for key in results[0]:
        values = [r[key] for r in results]
        runs = " / ".join(f"{v:,.1f}" for v in values)
        print(f"| {key} | {statistics.median(values):,.1f} | {runs} |")


if __name__ == "__main__":
    main()
