"""Collector benchmark: emit -> Kafka acknowledged, and memory while the broker is down.

    python benchmarks/collector.py [--events 300000] [--runs 3]

Starts its own Kafka broker (the local stack's broker, on free ports, under a temporary
folder), so it can stop it. Two phases:

* throughput: ``Collector.emit`` of ready events (1 and 50 sandboxes) until Kafka
  acknowledged all (``flush``), events/s; chain, spool (fsync per commit) and
  encoding included;
* outage: the broker is stopped, events are emitted at a steady rate for
  ``--outage-seconds``, RSS and the spool's size are sampled; then the broker starts
  again and the time until everything is delivered is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import process_memory_mb
from pipeline.collect.collector import Collector
from pipeline.commands.init import create_topics
from pipeline.config import Settings
from pipeline.sim.simulate import FleetSimulator
from pipeline.stack.kafka import KafkaBroker
from tests.conftest import free_ports


def fresh_topic(base: Settings) -> Settings:
    tag = uuid.uuid4().hex[:8]
    data = base.model_dump()
    data["kafka"].update(
        topic_events=f"cb{tag}.events",
        topic_alerts=f"cb{tag}.alerts",
        topic_deadletter=f"cb{tag}.dlq",
        topic_sandboxes=f"cb{tag}.sb",
        topic_checkpoints=f"cb{tag}.ckpt",
        topic_deferred=f"cb{tag}.deferred",
    )
    settings = Settings(**data)
    asyncio.run(create_topics(settings))
    return settings


async def throughput(settings: Settings, events: int, sandboxes: int, spool: Path) -> float:
    ready = list(FleetSimulator(sandboxes, seed=1).events(events))
    async with Collector(settings, spool_dir=spool) as collector:
        started = time.perf_counter()
        for event in ready:
            await collector.emit(event)
        await collector.flush()
        return events / (time.perf_counter() - started)


async def outage(
    settings: Settings, broker: KafkaBroker, rate: int, seconds: float, spool: Path
) -> dict[str, float]:
    sim = FleetSimulator(20, seed=2).events(1 << 40)
    async with Collector(settings, spool_dir=spool) as collector:
        for _ in range(rate):  # warm up while the broker is up
            await collector.emit(next(sim))
        await collector.flush()
        rss_before = process_memory_mb()
        await asyncio.to_thread(broker.process.stop)
        samples = []
        started = time.monotonic()
        emitted = 0
        while time.monotonic() - started < seconds:
            for _ in range(rate // 10):
                await collector.emit(next(sim))
                emitted += 1
            samples.append((process_memory_mb(), collector.spool.bytes_on_disk / 1e6))
            await asyncio.sleep(0.1)
        await asyncio.to_thread(lambda: (broker.start(), broker.wait_ready()))
        back = time.monotonic()
        await collector.flush()
        catch_up = time.monotonic() - back
    rss = [r for r, _ in samples]
    return {
        "events_during_outage": emitted,
        "rss_before_mb": rss_before,
        "rss_max_during_mb": max(rss),
        "rss_growth_mb": max(rss) - rss_before,
        "spool_max_mb": max(s for _, s in samples),
        "catch_up_s": catch_up,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--outage-rate", type=int, default=20_000, help="events/s")
    parser.add_argument("--outage-seconds", type=float, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        port, controller = free_ports(2)
        base = Settings(
            home=home,
            kafka={"bootstrap": f"127.0.0.1:{port}", "partitions": 6},
            stack={"kafka_port": port, "kafka_controller_port": controller},
        )
        libs = Path(__file__).resolve().parent.parent / ".auditpipe" / "test-stack" / "kafka"
        if (libs / "libs").exists():
            (home / "kafka").mkdir()
            (home / "kafka" / "libs").symlink_to(libs / "libs")
        broker = KafkaBroker(base)
        broker.start()
        broker.wait_ready()
        try:
            for sandboxes in (1, 50):
                rates = [
                    asyncio.run(
                        throughput(
                            fresh_topic(base),
                            args.events,
                            sandboxes,
                            home / f"spool-{sandboxes}-{run}",
                        )
                    )
                    for run in range(args.runs)
                ]
                print(
                    f"emit -> acked, {sandboxes} sandbox(es), {args.events:,} events: "
                    f"median {statistics.median(rates):,.0f} events/s "
                    f"(runs {' / '.join(f'{r:,.0f}' for r in rates)})",
                    flush=True,
                )
            figures = asyncio.run(
                outage(
                    fresh_topic(base),
                    broker,
                    args.outage_rate,
                    args.outage_seconds,
                    home / "spool-outage",
                )
            )
            print(
                f"broker down {args.outage_seconds:g} s at {args.outage_rate:,} events/s: "
                + ", ".join(f"{k}={v:,.1f}" for k, v in figures.items()),
                flush=True,
            )
        finally:
            broker.process.stop()


if __name__ == "__main__":
    main()
