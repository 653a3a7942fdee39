"""The ClickHouse sink alone: rows/s into the local ClickHouse, against plain inserts.

    python benchmarks/sink.py [--rows 1000000] [--runs 3]

Needs the local stack (`auditpipe stack up`) or AUDITPIPE_CLICKHOUSE_URL. Events come
from the fleet simulator, already decoded and enriched (as the sink receives them), in
messages of 1,000 events over 6 partitions. Measured, each run into a fresh table:

* sink: ``ClickHouseSink.add`` per message, a flush every 25 messages (a worker's
  checkpoint), with the worker's settings (lz4, one insert in flight in the background,
  max_rows 25,000): the request builder, the retry service and the inserts, through the
  worker's fenced path (``fencing.send_insert``, with a fence that always agrees: the
  first block encoded before the request, no encoding thread);
* unfenced: the same through ``clickhouse-connect``'s own ``insert`` (its threaded
  encoder), as tools without a fence insert;
* plain: ``clickhouse-connect`` ``insert`` of the same rows, columns prepared beforehand
  (no sink code at all), 25,000 rows per insert.

Printed: rows/s per run, the medians, and the ratio sink / plain in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.commands.init import apply_migrations, load_migrations
from pipeline.config import load_settings
from pipeline.outputs.clickhouse import ClickHouseSink, InsertService
from pipeline.outputs.clickhouse.client import connect
from pipeline.outputs.clickhouse.request_builder import (
    EVENT_COLUMNS,
    REPEAT_COLUMNS,
    build_event_columns,
)
from pipeline.sim.simulate import FleetSimulator

MESSAGE_EVENTS = 1_000
PARTITIONS = 6
FLUSH_EVERY = 25


def messages(rows: int) -> list[tuple[int, int, list[dict[str, Any]]]]:
    events = list(FleetSimulator(200, seed=9).events(rows))
    for e in events:
        e.update(owner="ana", environment="dev", image="python:3.11", labels={}, severity="low")
    out = []
    for n, start in enumerate(range(0, rows, MESSAGE_EVENTS)):
        partition, offset = n % PARTITIONS, n // PARTITIONS
        batch = events[start : start + MESSAGE_EVENTS]
        for e in batch:
            e["kafka_partition"], e["kafka_offset"] = partition, offset
        out.append((partition, offset, batch))
    return out


def run_sink(client_factory: Any, table: str, batches: list[Any], fenced: bool = True) -> float:
    service = InsertService(client_factory, fence=(lambda: None) if fenced else None)
    sink = ClickHouseSink(
        service,
        table=table,
        max_rows=25_000,
        max_bytes=64 << 20,
        executor=ThreadPoolExecutor(max_workers=1),
    )
    started = time.perf_counter()
    for n, (partition, _offset, events) in enumerate(batches, 1):
        sink.add(partition, events, size_bytes=150 * len(events))
        if n % FLUSH_EVERY == 0:
            sink.flush()
    sink.flush()
    return sum(len(b[2]) for b in batches) / (time.perf_counter() - started)


def run_plain(client: Any, table: str, batches: list[Any]) -> float:
    events = [e for _, _, batch in batches for e in batch]
    blocks = [
        build_event_columns(events[i : i + 25_000], repeats=False)
        for i in range(0, len(events), 25_000)
    ]
    started = time.perf_counter()
    for columns in blocks:
        client.insert(
            table, columns, column_names=list(EVENT_COLUMNS[:-REPEAT_COLUMNS]), column_oriented=True
        )
    return len(events) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    settings = load_settings()
    client = connect(settings.clickhouse)
    batches = messages(args.rows)
    sink_rates, unfenced_rates, plain_rates = [], [], []
    for run in range(1, args.runs + 1):
        database = f"bench_sink_{uuid.uuid4().hex[:8]}"
        apply_migrations(client, database, load_migrations())
        table = f"{database}.events"
        try:
            sink_rate = run_sink(lambda: connect(settings.clickhouse), table, batches)
            client.command(f"TRUNCATE TABLE {table}")
            unfenced = run_sink(lambda: connect(settings.clickhouse), table, batches, False)
            client.command(f"TRUNCATE TABLE {table}")
            plain_rate = run_plain(client, table, batches)
        finally:
            client.command(f"DROP DATABASE IF EXISTS {database}")
        sink_rates.append(sink_rate)
        unfenced_rates.append(unfenced)
        plain_rates.append(plain_rate)
        print(
            f"run {run}: sink {sink_rate:,.0f} rows/s; unfenced sink {unfenced:,.0f} rows/s; "
            f"plain clickhouse-connect {plain_rate:,.0f} rows/s; ratio sink / plain "
            f"{sink_rate / plain_rate:.2f}, sink / unfenced {sink_rate / unfenced:.2f}",
            flush=True,
        )
    ratios = [s / p for s, p in zip(sink_rates, plain_rates, strict=True)]
    fence_ratios = [s / u for s, u in zip(sink_rates, unfenced_rates, strict=True)]
    print(
        f"median of {args.runs}: sink {statistics.median(sink_rates):,.0f} rows/s; unfenced "
        f"{statistics.median(unfenced_rates):,.0f}; plain {statistics.median(plain_rates):,.0f} "
        f"rows/s; ratio sink / plain {statistics.median(ratios):.2f}, sink / unfenced "
        f"{statistics.median(fence_ratios):.2f}"
    )


if __name__ == "__main__":
    main()
