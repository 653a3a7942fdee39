"""Soak: the whole pipeline at a steady load for a long time, with faults injected.

    python benchmarks/soak.py [--minutes 30] [--rate 0] [--seed 1] [--plot soak.png]

Starts a private Kafka broker and ClickHouse server (the embedded stack, on free ports
under a temporary home), a real ``auditpipe worker`` with the default rules, a publisher
of simulated fleet events at --rate events/s (0: half the worker's maximum, measured
first over 200,000 events) with 2 reverse-shell attacks a second mixed in, and a consumer
of the alerts topic. Faults come at random times (--seed), apart from each other: the
worker killed with SIGKILL (restarted 2 s later), ClickHouse stopped for 20 s, the
broker restarted; each twice over the run. Every minute it samples the worker's RSS, its
consumer lag (``auditpipe_consumer_lag``) and the alert latency of that minute's attacks
(p50/p99: from publish to the alert on its topic), and prints them as a table (and a PNG
with --plot, if matplotlib is installed: ``pip install matplotlib``). At the end: every
event published is stored exactly once (``count() = uniqExact(event_id)`` = published,
no dead letter) and every attack raised an alert.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import process_memory_mb
from benchmarks.alert_latency import attack, read_arrivals
from benchmarks.e2e import measure_worker
from pipeline.collect.publisher import EventPublisher, now_ms
from pipeline.commands.init import apply_migrations, create_topics, load_migrations
from pipeline.config import Settings
from pipeline.outputs.clickhouse.client import connect
from pipeline.schema import codec_for
from pipeline.sim.simulate import FleetSimulator
from pipeline.stack.clickhouse import ClickHouseServer
from pipeline.stack.kafka import KafkaBroker
from pipeline.stack.process import StackError
from tests.conftest import free_port
from tests.integration.helpers import WorkerProcess, scalar

FAULTS = ("worker_kill", "clickhouse_down", "broker_restart")
ATTACKS_PER_S = 2.0


class Soak:
    def __init__(self, home: Path, args: argparse.Namespace) -> None:
        self.args = args
        tag = uuid.uuid4().hex[:6]
        self.settings = Settings(
            home=home,
            stack={
                "kafka_port": free_port(),
                "kafka_controller_port": free_port(),
                "clickhouse_http_port": free_port(),
                "clickhouse_tcp_port": free_port(),
            },
            worker={"app_id": f"soak-{tag}", "web_port": free_port()},
            # Every event is its own row: the end check counts them one by one.
            collapse={"windows": {}},
        )
        port = self.settings.stack
        self.settings.kafka.bootstrap = f"127.0.0.1:{port.kafka_port}"
        self.settings.clickhouse.url = f"http://127.0.0.1:{port.clickhouse_http_port}"
        self.broker = KafkaBroker(self.settings)
        self.clickhouse = ClickHouseServer(self.settings)
        self.worker = WorkerProcess(self.settings, name="soak-worker")
        self.sent = 0
        self.emitted: dict[str, float] = {}
        self.log: list[str] = []

    # -- the services ------------------------------------------------------------------

    def start(self) -> None:
        for service in (self.clickhouse, self.broker):
            service.start()
            service.wait_ready()
        asyncio.run(create_topics(self.settings))
        apply_migrations(self.client(), self.settings.clickhouse.database, load_migrations())

    def client(self) -> Any:
        return connect(self.settings.clickhouse)

    def stop(self) -> None:
        self.worker.kill()
        for service in (self.broker, self.clickhouse):
            service.process.stop()

    def inject(self, fault: str) -> None:
        self.log.append(f"{time.strftime('%H:%M:%S')} {fault}")
        print(f"  fault: {fault}", flush=True)
        if fault == "worker_kill":
            self.worker.kill()
            time.sleep(2)
            self.worker.start()
        elif fault == "clickhouse_down":
            self.clickhouse.process.stop()
            time.sleep(20)
            restart(self.clickhouse)
        else:
            self.broker.process.stop()
            restart(self.broker)

    # -- load --------------------------------------------------------------------------

    async def publish(self, rate: float, seconds: float) -> None:
        sim = FleetSimulator(50, seed=self.args.seed)
        stream = sim.events(10**9)
        codec = codec_for(self.settings.kafka.schema_registry_url)
        async with EventPublisher(self.settings, codec, client_id="soak") as publisher:
            started = time.monotonic()
            attacked = 0
            while (elapsed := time.monotonic() - started) < seconds:
                due = int(rate * (elapsed + 0.01))
                while self.sent < due:
                    event = next(stream)
                    event["ts"] = now_ms()
                    await publisher.add(event)
                    self.sent += 1
                while attacked < int(ATTACKS_PER_S * elapsed):
                    event = attack(attacked, sim.run_id)
                    self.emitted[event["event_id"]] = time.time() * 1000
                    await publisher.add(event)
                    attacked += 1
                    self.sent += 1
                await asyncio.sleep(0.01)

    def lag(self) -> float:
        url = f"http://127.0.0.1:{self.settings.worker.web_port}/metrics"
        try:
            text = urllib.request.urlopen(url, timeout=5).read().decode()
        except OSError:
            return float("nan")  # the worker is down (a fault)
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("auditpipe_consumer_lag{")
        )


def restart(service: Any) -> None:
    """Start a stopped service once its ports are free again (a just-stopped process may
    hold them a moment), and wait until it answers."""
    deadline = time.monotonic() + 60
    while True:
        try:
            service.start()
            break
        except StackError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    service.wait_ready()


def schedule(minutes: float, rng: random.Random) -> list[tuple[float, str]]:
    """Each fault twice, at random times at least 2 minutes apart, none in the first or
    last 2 minutes."""
    faults = [f for f in FAULTS for _ in range(2)]
    rng.shuffle(faults)
    slots = max(1.0, (minutes - 4) / len(faults))
    return [(60 * (2 + n * slots + rng.uniform(0, slots * 0.5)), f) for n, f in enumerate(faults)]


def sampler(soak: Soak, started: float, stop: threading.Event, rows: list[dict[str, Any]]) -> None:
    arrivals_path = soak.settings.home / "arrivals.txt"
    minute = 0
    while not stop.wait(max(0.0, started + 60 * (minute + 1) - time.monotonic())):
        minute += 1
        window = (time.time() * 1000 - 60_000 - 30_000, time.time() * 1000 - 30_000)
        arrived = read_arrivals(arrivals_path)
        latencies = sorted(
            arrived[i] - t
            for i, t in soak.emitted.items()
            if window[0] <= t < window[1] and i in arrived
        )
        pid = soak.worker.proc.pid if soak.worker.proc else 0
        row = {
            "minute": minute,
            "sent": soak.sent,
            "rss_mb": process_memory_mb(pid) if pid else float("nan"),
            "lag": soak.lag(),
            "p50_ms": statistics.median(latencies) if latencies else float("nan"),
            "p99_ms": latencies[int(0.99 * (len(latencies) - 1))] if latencies else float("nan"),
        }
        rows.append(row)
        print("  " + "  ".join(f"{k}={v:,.0f}" for k, v in row.items()), flush=True)


def run(args: argparse.Namespace) -> int:
    home = Path(tempfile.mkdtemp(prefix="auditpipe-soak-"))
    soak = Soak(home, args)
    rng = random.Random(args.seed)
    consumer = None
    try:
        soak.start()
        rate = args.rate
        if not rate:
            print("measuring the worker's maximum over 200,000 events ...", flush=True)
            rate = measure_maximum(soak) / 2
        plan = schedule(args.minutes, random.Random(args.seed))
        print(f"soak: {args.minutes} min at {rate:,.0f} events/s; faults at {plan}", flush=True)
        arrivals = soak.settings.home / "arrivals.txt"
        arrivals.touch()
        consumer = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("alert_latency.py")), "--consume",
             soak.settings.kafka.bootstrap, soak.settings.kafka.topic_alerts, str(arrivals)],
        )  # fmt: skip
        soak.worker.start()
        rows: list[dict[str, Any]] = []
        stop = threading.Event()
        started = time.monotonic()
        threading.Thread(target=sampler, args=(soak, started, stop, rows), daemon=True).start()
        faults = threading.Thread(
            target=inject_all, args=(soak, schedule(args.minutes, rng), started), daemon=True
        )
        faults.start()
        asyncio.run(soak.publish(rate, args.minutes * 60))
        faults.join()
        stop.set()
        return verdict(soak, rows, args)
    finally:
        if consumer is not None:
            consumer.terminate()
        soak.stop()
        shutil.rmtree(home, ignore_errors=True)


def measure_maximum(soak: Soak) -> float:
    async def prepublish() -> None:
        codec = codec_for(soak.settings.kafka.schema_registry_url)
        async with EventPublisher(soak.settings, codec) as publisher:
            await publisher.add_many(FleetSimulator(50, seed=99).events(200_000))

    asyncio.run(prepublish())
    maximum, _ = measure_worker(soak.settings, soak.client(), 200_000)
    soak.sent = 200_000  # stored already: part of the end check
    return maximum


def inject_all(soak: Soak, plan: list[tuple[float, str]], started: float) -> None:
    for at, fault in plan:
        time.sleep(max(0.0, started + at - time.monotonic()))
        soak.inject(fault)


def verdict(soak: Soak, rows: list[dict[str, Any]], args: argparse.Namespace) -> int:
    client = soak.client()
    db = soak.settings.clickhouse.database
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        stored = int(scalar(client, f"SELECT count() FROM {db}.events"))
        if stored >= soak.sent:
            break
        time.sleep(2)
    count, unique = client.query(
        f"SELECT count(), uniqExact(event_id) FROM {db}.events"
    ).result_rows[0]
    dead = int(scalar(client, f"SELECT count() FROM {db}.deadletter"))
    arrived = read_arrivals(soak.settings.home / "arrivals.txt")
    alerted = sum(1 for i in soak.emitted if i in arrived)
    print("\n| minute | events sent | worker RSS MB | lag | alert p50 ms | alert p99 ms |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['minute']} | {r['sent']:,} | {r['rss_mb']:,.0f} | {r['lag']:,.0f} | "
              f"{r['p50_ms']:,.0f} | {r['p99_ms']:,.0f} |")  # fmt: skip
    print(f"\nfaults: {'; '.join(soak.log)}")
    print(f"published {soak.sent:,}; stored {count:,} rows, {unique:,} distinct ids; "
          f"dead letters {dead}; attacks alerted {alerted}/{len(soak.emitted)}")  # fmt: skip
    if args.plot:
        plot(rows, Path(args.plot))
    ok = count == unique == soak.sent and dead == 0 and alerted == len(soak.emitted)
    print("soak: " + ("nothing lost or doubled" if ok else "FAILED"))
    return 0 if ok else 1


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(no plot: matplotlib is not installed)")
        return
    minutes = [r["minute"] for r in rows]
    figure, axes = plt.subplots(3, 1, figsize=(8, 8), sharex=True)
    axes[0].plot(minutes, [r["rss_mb"] for r in rows])
    axes[0].set_ylabel("worker RSS (MB)")
    axes[1].plot(minutes, [r["lag"] for r in rows])
    axes[1].set_ylabel("consumer lag")
    axes[2].plot(minutes, [r["p50_ms"] for r in rows], label="p50")
    axes[2].plot(minutes, [r["p99_ms"] for r in rows], label="p99")
    axes[2].set_ylabel("alert latency (ms)")
    axes[2].set_xlabel("minute")
    axes[2].legend()
    figure.tight_layout()
    figure.savefig(path)
    print(f"plot: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--rate", type=float, default=0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--plot", default="")
    sys.exit(run(parser.parse_args()))


if __name__ == "__main__":
    main()
