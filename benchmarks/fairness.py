"""Fairness under a flood: the other tenants' alert latency with and without the limits.

    python benchmarks/fairness.py [--runs 3]

Needs the local stack (`auditpipe stack up`) or AUDITPIPE_KAFKA_BOOTSTRAP /
AUDITPIPE_CLICKHOUSE_URL. Each run, twice (fairness on, then off), on a fresh topic of
one partition: 20 quiet sandboxes of 5 tenants send 4,000 events/s together with 2
reverse shells a second among them, and one sandbox floods at 40,000 events/s (more than
a worker stores) for 12 s; the alert latency of the reverse shells (publish to arrival on
the alerts topic), and the seconds until every event is stored. The scenario is the one
of tests/integration/test_fairness.py, which asserts it; this prints the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config import Settings, load_settings
from pipeline.sim.simulate import FleetSimulator
from tests.conftest import free_port
from tests.integration.helpers import WorkerProcess, provision, scalar, wait_until
from tests.integration.test_fairness import (
    FLOOD_MESSAGE,
    AlertArrivals,
    flood_messages,
    publish,
)


def isolated(base: Settings, tag: str, enabled: bool) -> Settings:
    data = base.model_dump()
    data["home"] = Path(f"/tmp/auditpipe-fairness-{tag}")
    data["kafka"].update(
        {name: f"fair{tag}.{name[6:]}" for name in data["kafka"] if name.startswith("topic_")},
        partitions=1,
    )
    data["clickhouse"]["database"] = f"fair_{tag}"
    data["worker"].update(app_id=f"fair-{tag}", web_port=free_port(), take_within_s=0.1)
    data["fairness"].update(enabled=enabled, sandbox_events_per_s=1_000, sandbox_burst=5_000)
    return Settings(**data)


def one_run(base: Settings, enabled: bool) -> dict[str, float]:
    settings = isolated(base, uuid.uuid4().hex[:8], enabled)
    client = provision(settings)
    db = settings.clickhouse.database
    flood = flood_messages(settings, next(FleetSimulator(1, seed=9).events(1)))
    arrivals = AlertArrivals(settings)
    arrivals.thread.start()
    arrivals.ready.wait(30)
    with WorkerProcess(settings):
        started = time.monotonic()
        emitted, quiet = asyncio.run(publish(settings, flood, uuid.uuid4().hex[:6]))
        total = quiet + len(emitted) + len(flood) * FLOOD_MESSAGE
        wait_until(
            lambda: scalar(client, f"SELECT count() FROM {db}.events") >= total, 600, "stored"
        )
        stored_s = time.monotonic() - started
        wait_until(lambda: set(emitted) <= set(arrivals.arrived), 60, "attacks not alerted")
    arrivals.done.set()
    latencies = sorted(arrivals.arrived[i] - t for i, t in emitted.items())
    return {
        "p50": statistics.median(latencies),
        "p95": latencies[int(0.95 * (len(latencies) - 1))],
        "max": latencies[-1],
        "stored_s": stored_s,
        "events": total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    base = load_settings()
    results: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    for run in range(args.runs):
        for enabled in (True, False):
            figures = one_run(base, enabled)
            results[enabled].append(figures)
            print(f"run {run + 1}, limits {'on' if enabled else 'off'}: {figures}", flush=True)
    print("\n| other tenants' alert latency | limits on | limits off |\n|---|---|---|")
    for name in ("p50", "p95", "max", "stored_s"):
        cells = []
        for enabled in (True, False):
            values = [r[name] for r in results[enabled]]
            cells.append(
                f"{statistics.median(values):,.0f} ({' / '.join(f'{v:,.0f}' for v in values)})"
            )
        print(f"| {name} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
