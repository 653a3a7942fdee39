"""``auditpipe run``: the whole pipeline on the embedded default, in one command.

Brings the local stack up, applies ``init``, starts a worker process, publishes a
simulated fleet's events while showing progress, waits until every event is stored,
then prints example analyst queries with their results.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.client import Client

from pipeline.collect.publisher import EventPublisher
from pipeline.commands.init import apply_migrations, create_topics, load_migrations
from pipeline.commands.simulate import simulation_args
from pipeline.config import Settings
from pipeline.outputs.clickhouse.client import connect
from pipeline.schema import codec_for
from pipeline.sim.scenarios import SCENARIOS
from pipeline.sim.simulate import FleetSimulator, run_paced
from pipeline.stack import LocalStack, StackError

WORKER_READY_MARK = "Worker ready"
DRAIN_TIMEOUT_S = 120.0

EXAMPLE_QUERIES = (
    (
        "Events per category and level in this run",
        "SELECT category, level, count() AS events FROM {db}.events WHERE {run} "
        "GROUP BY category, level ORDER BY events DESC LIMIT 8",
    ),
    (
        "The busiest sandboxes",
        "SELECT tenant, sandbox_id, count() AS events, max(seq) AS last_seq "
        "FROM {db}.events WHERE {run} GROUP BY tenant, sandbox_id ORDER BY events DESC LIMIT 5",
    ),
    (
        "Denied or failed actions, by who did them",
        "SELECT tenant, actor_user, category, action, outcome, count() AS n FROM {db}.events "
        "WHERE {run} AND outcome != 'success' GROUP BY ALL ORDER BY n DESC LIMIT 5",
    ),
    (
        "Bytes uploaded per tenant",
        "SELECT tenant, formatReadableSize(sum(bytes)) AS uploaded, count() AS uploads "
        "FROM {db}.events WHERE {run} AND category = 'data_transfer' GROUP BY tenant",
    ),
    (
        "Alerts raised in this run (the attack scenarios injected)",
        "SELECT severity, rule_id, sandbox_id, count AS n, title FROM {db}.alerts "
        "WHERE {run} ORDER BY severity DESC, first_ts LIMIT 12",
    ),
    (
        "One sandbox's timeline (first 5 events)",
        "SELECT ts, seq, category, action, object FROM {db}.events "
        "WHERE {run} AND sandbox_id = '{first_sandbox}' ORDER BY seq LIMIT 5",
    ),
)


def run_main_job(
    settings: Settings,
    *,
    sandboxes: int,
    tenants: int,
    rate: float,
    duration_s: float,
    seed: int | None,
    scenarios: Sequence[str] = (),
) -> int:
    print("== 1/5 local stack", flush=True)
    LocalStack(settings).up()
    print("== 2/5 init", flush=True)
    created = asyncio.run(create_topics(settings))
    client = connect(settings.clickhouse)
    applied = apply_migrations(client, settings.clickhouse.database, load_migrations())
    print(f"topics created: {len(created)}, migrations applied: {len(applied)}")
    print("== 3/5 worker", flush=True)
    worker = _start_worker(settings)
    try:
        sim = FleetSimulator(sandboxes, tenants=tenants, seed=seed)
        run_filter = f"sandbox_id LIKE 'sb-{sim.run_id}-%'"
        print(
            f"== 4/5 simulated fleet: {sandboxes} sandboxes, {rate:g} events/s for "
            f"{duration_s:g} s (run {sim.run_id})",
            flush=True,
        )
        published = asyncio.run(
            _publish(settings, sim, client, run_filter, rate, duration_s, scenarios)
        )
        stored = _wait_stored(settings, client, run_filter, published)
        print("== 5/5 example analyst queries", flush=True)
        _show_queries(client, settings.clickhouse.database, run_filter, sim.sandbox_ids[0])
    finally:
        _stop_worker(worker)
    print(
        f"\n{stored} of {published} events stored. The stack keeps running "
        f"(ClickHouse at {settings.clickhouse.url}); `auditpipe stack down` stops it."
    )
    return 0 if stored == published else 1


def _start_worker(settings: Settings) -> subprocess.Popen[bytes]:
    log_path = settings.home.resolve() / "logs" / "worker.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    offset = log_path.stat().st_size if log_path.exists() else 0
    with log_path.open("ab") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "worker"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "AUDITPIPE_HOME": str(settings.home.resolve())},
        )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise StackError(f"the worker exited at start; see {log_path}")
        if WORKER_READY_MARK in _read_from(log_path, offset):
            print(f"worker ready (pid {worker.pid}, log {log_path})")
            return worker
        time.sleep(0.3)
    worker.terminate()
    raise StackError(f"the worker was not ready within 90 s; see {log_path}")


def _read_from(path: Path, offset: int) -> str:
    with path.open("rb") as handle:
        handle.seek(offset)
        return handle.read().decode(errors="replace")


def _stop_worker(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()


async def _publish(
    settings: Settings,
    sim: FleetSimulator,
    client: Client,
    run_filter: str,
    rate: float,
    duration_s: float,
    scenarios: Sequence[str],
) -> int:
    codec = codec_for(settings.kafka.schema_registry_url)
    table = f"{settings.clickhouse.database}.events"
    started = time.monotonic()
    last_shown = 0.0

    def show(sent: int) -> None:
        nonlocal last_shown
        now = time.monotonic()
        if now - last_shown >= 1.0:
            last_shown = now
            stored = _count(client, table, run_filter)
            print(
                f"  {now - started:5.1f} s  published {sent:>9,}  stored {stored:>9,}  "
                f"({stored / (now - started):,.0f} events/s stored)",
                flush=True,
            )

    async with EventPublisher(settings, codec, client_id="run") as publisher:
        sent = await run_paced(
            sim, publisher.add, rate=rate, duration_s=duration_s, on_tick=show, scenarios=scenarios
        )
    return sent


def _wait_stored(settings: Settings, client: Client, run_filter: str, published: int) -> int:
    table = f"{settings.clickhouse.database}.events"
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    stored = _count(client, table, run_filter)
    while stored < published and time.monotonic() < deadline:
        time.sleep(0.5)
        stored = _count(client, table, run_filter)
    print(f"  all published: {published:,}; stored: {stored:,}", flush=True)
    return stored


def _count(client: Client, table: str, run_filter: str) -> int:
    return int(client.query(f"SELECT count() FROM {table} WHERE {run_filter}").result_rows[0][0])


def _show_queries(client: Client, database: str, run_filter: str, first_sandbox: str) -> None:
    for title, template in EXAMPLE_QUERIES:
        sql = template.format(db=database, run=run_filter, first_sandbox=first_sandbox)
        result = client.query(sql)
        print(f"\n-- {title}\n{sql};")
        widths = [
            max(len(str(v)) for v in [name, *(row[i] for row in result.result_rows)])
            for i, name in enumerate(result.column_names)
        ]
        print("  ".join(n.ljust(w) for n, w in zip(result.column_names, widths, strict=True)))
        for row in result.result_rows:
            print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)))


def add_parser(sub: Any) -> None:
    run = sub.add_parser(
        "run",
        help="the main job: stack up, init, worker, a simulated fleet, "
        "live progress, then example analyst queries",
    )
    simulation_args(run, sandboxes=50, rate=5000, duration=20)
    run.add_argument(
        "--benign",
        action="store_true",
        help="inject no attack (by default every scenario is injected once, to show alerts)",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    return run_main_job(
        settings,
        sandboxes=args.sandboxes,
        tenants=args.tenants,
        rate=args.rate,
        duration_s=args.duration,
        seed=args.seed,
        scenarios=args.scenario or ([] if args.benign else sorted(SCENARIOS)),
    )
