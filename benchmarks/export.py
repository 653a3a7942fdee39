"""``auditpipe export`` throughput: stored events to OCSF Parquet and to OCSF JSON lines.

    python benchmarks/export.py [--events 300000] [--runs 3]

Needs the local stack (``auditpipe stack up``). Inserts --events simulated events (two
event days) into a fresh database, then times the export of the whole range, in
process, for each format: rows/s from the first query to the last file renamed (the
ClickHouse read, the OCSF shaping, the Parquet or JSON writing; for Parquet, ClickHouse
does the shaping and the writing, ``pipeline/export/lake.py``). Medians of --runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.e2e import isolated
from pipeline.config import load_settings
from pipeline.export.run import export, range_params
from pipeline.outputs.clickhouse.client import connect
from tests.integration.test_export import DAY, START, store

FORMATS = ("ocsf-parquet", "ocsf-json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="auditpipe-export-bench-"))
    tag = uuid.uuid4().hex[:8]
    settings = isolated(load_settings(), tag, home / tag)
    store(settings, args.events)
    client = connect(settings.clickhouse)
    params = range_params(START - DAY, START + 3 * DAY, None)
    figures: dict[str, list[float]] = {fmt: [] for fmt in FORMATS}
    for run in range(args.runs):
        for fmt in FORMATS:
            out = home / f"out-{run}-{fmt}"
            started = time.perf_counter()
            done = export(client, settings.clickhouse.database, ["events"], fmt, out, params)
            rate = done.rows["events"] / (time.perf_counter() - started)
            figures[fmt].append(rate)
            size = sum(f.stat().st_size for f in done.files) / 1e6
            print(f"run {run + 1}, {fmt}: {rate:,.0f} events/s, {size:,.1f} MB", flush=True)
    print(f"\nmedians of {args.runs} runs, {args.events:,} events")
    for fmt, values in figures.items():
        print(f"{fmt:<14} {statistics.median(values):>9,.0f} events/s")


if __name__ == "__main__":
    main()
