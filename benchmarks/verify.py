"""`auditpipe verify` throughput: chains recomputed per second inside ClickHouse.

    python benchmarks/verify.py [--events 1000000] [--sandboxes 100] [--runs 3]

Needs the local stack (or AUDITPIPE_CLICKHOUSE_URL). Builds --events chained events in
Python (the collector's ChainHead), inserts them straight into a scratch database's
audit.events, then times `verify` over all of them --runs times.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.chain.hashing import ChainHead
from pipeline.chain.verify import verify
from pipeline.commands.init import apply_migrations, load_migrations
from pipeline.config import load_settings
from pipeline.outputs.clickhouse.client import connect
from pipeline.outputs.clickhouse.request_builder import EVENT_COLUMNS, build_event_columns
from pipeline.sim.simulate import FleetSimulator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--sandboxes", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    settings = load_settings()
    client = connect(settings.clickhouse)
    database = f"bench_verify_{uuid.uuid4().hex[:8]}"
    apply_migrations(client, database, load_migrations())
    try:
        heads: dict[str, ChainHead] = {}
        batch = []
        for event in FleetSimulator(args.sandboxes, seed=4).events(args.events):
            heads.setdefault(event["sandbox_id"], ChainHead()).seal(event)
            event.update(kafka_partition=0, kafka_offset=0)
            batch.append(event)
            if len(batch) == 100_000:
                client.insert(
                    f"{database}.events",
                    build_event_columns(batch),
                    column_names=list(EVENT_COLUMNS),
                    column_oriented=True,
                )
                batch = []
        if batch:
            client.insert(
                f"{database}.events",
                build_event_columns(batch),
                column_names=list(EVENT_COLUMNS),
                column_oriented=True,
            )
        client.command(f"OPTIMIZE TABLE {database}.events FINAL")
        rates = []
        for _ in range(args.runs):
            started = time.perf_counter()
            report = verify(client, database)
            rates.append(report.chained / (time.perf_counter() - started))
            assert not report.findings, report.findings[:3]
        print(
            f"verify over {args.events:,} chained events of {args.sandboxes} sandboxes: "
            f"median {statistics.median(rates):,.0f} events/s "
            f"(runs {' / '.join(f'{r:,.0f}' for r in rates)}), 0 findings"
        )
    finally:
        client.command(f"DROP DATABASE IF EXISTS {database}")


if __name__ == "__main__":
    main()
