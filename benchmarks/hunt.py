"""``auditpipe hunt`` throughput: stored events scanned per second by the default pack's
rules compiled to ClickHouse SQL.

    python benchmarks/hunt.py [--events 1000000] [--runs 3]

Needs the local stack (``auditpipe stack up``). Inserts --events simulated events (the
benign mix with every attack scenario, over one day) into a fresh database, then runs
every enabled rule of the default pack over the whole range, --runs times. Figures:
rows read per second of wall time for the whole pack (ClickHouse's own read_rows summed
over the rules, over the time from the first query to the last result), and per kind of
rule. Medians of --runs. The database is dropped at the end.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clickhouse_connect.driver.client import Client

from benchmarks.e2e import isolated
from pipeline.config import Settings, load_settings
from pipeline.export.run import range_params
from pipeline.hunt.run import run_rule
from pipeline.outputs.clickhouse.request_builder import (
    EVENT_COLUMNS,
    REPEAT_COLUMNS,
    build_event_columns,
)
from pipeline.rules.language import load_rules
from pipeline.schema.event import Event
from pipeline.sim.scenarios import SCENARIOS
from pipeline.sim.simulate import FleetSimulator
from tests.integration.helpers import provision

START = 1_795_860_000_000
CHUNK = 100_000


def store(settings: Settings, events: int) -> None:
    client = provision(settings)
    db = settings.clickhouse.database
    simulator = FleetSimulator(500, seed=3)
    stream = simulator.events(events, start_ms=START, scenarios=list(SCENARIOS) * 20)
    batch: list[Event] = []
    offset = 0
    for event in stream:
        event["kafka_partition"], event["kafka_offset"] = 0, offset
        offset += 1
        batch.append(event)
        if len(batch) == CHUNK:
            insert(client, db, batch)
            batch = []
    if batch:
        insert(client, db, batch)
    print(f"stored {offset:,} events", flush=True)


def insert(client: Client, db: str, batch: list[Event]) -> None:
    client.insert(
        f"{db}.events",
        build_event_columns(batch, repeats=False),
        column_names=list(EVENT_COLUMNS[:-REPEAT_COLUMNS]),
        column_oriented=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="auditpipe-hunt-bench-"))
    tag = uuid.uuid4().hex[:8]
    settings = isolated(load_settings(), tag, home / tag)
    store(settings, args.events)
    client = provision(settings)
    db = settings.clickhouse.database
    rules = load_rules([]).enabled
    params = range_params(START - 86_400_000, START + 2 * 86_400_000, None)
    whole: list[float] = []
    seconds: list[float] = []
    by_kind: dict[str, list[float]] = defaultdict(list)
    try:
        for run in range(args.runs):
            read: dict[str, int] = defaultdict(int)
            spent: dict[str, float] = defaultdict(float)
            hits = 0
            started = time.perf_counter()
            for rule in rules:
                before = time.perf_counter()
                done = run_rule(client, db, rule, params)
                assert done.error is None, done.error
                read[rule.kind] += done.scanned
                spent[rule.kind] += time.perf_counter() - before
                hits += len(done.alerts)
            elapsed = time.perf_counter() - started
            rate = sum(read.values()) / elapsed
            whole.append(rate)
            seconds.append(elapsed)
            for kind in read:
                by_kind[kind].append(read[kind] / spent[kind])
            print(
                f"run {run + 1}: {len(rules)} rules, {hits} hits, "
                f"{sum(read.values()):,} rows read in {elapsed:.2f} s: {rate:,.0f} rows/s",
                flush=True,
            )
    finally:
        client.command(f"DROP DATABASE IF EXISTS {db}")
    print(f"\nmedians of {args.runs} runs, {args.events:,} stored events, {len(rules)} rules")
    print(f"{'whole pack':<12} {statistics.median(whole):>14,.0f} rows/s")
    for kind, values in sorted(by_kind.items()):
        count = sum(r.kind == kind for r in rules)
        print(f"{kind:<12} {statistics.median(values):>14,.0f} rows/s ({count} rules)")
    print(f"the whole pack over the stored events: {statistics.median(seconds):.2f} s")


if __name__ == "__main__":
    main()
