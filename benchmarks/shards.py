"""The ClickHouse sink into two shards behind Distributed tables, against one server.

    python benchmarks/shards.py [--rows 500000] [--runs 3]

Starts its own ClickHouse servers of the embedded engine (no stack needed): two shards
of a cluster (``pipeline/stack/cluster.py``), and a third server alone. Each run creates
a fresh database on both as ``auditpipe init`` does (on the cluster: the migrations on
each shard's ``<database>_local``, the Distributed tables on the first), then feeds the
same messages through the worker's sink (``benchmarks/sink.py``'s ``run_sink``: fenced
path, a flush every 25 messages) into the single server and through the cluster's front.
Printed: rows/s per run, the medians, and the ratio cluster / single in the same run.
All servers share this machine's cores, so the figure is the Distributed path's cost
here, not a cluster's scale-out.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.sink import messages, run_sink
from pipeline.commands.init import apply_migrations, load_migrations
from pipeline.config import ClickHouseConfig
from pipeline.outputs.clickhouse.client import connect
from pipeline.outputs.clickhouse.distributed import (
    create_distributed,
    local_database,
    shard_configs,
)
from pipeline.stack.cluster import ClickHouseShards

Batches = list[tuple[int, int, list[dict[str, Any]]]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    batches = messages(args.rows)
    with tempfile.TemporaryDirectory(prefix="auditpipe-shards-") as root:
        cluster = ClickHouseShards(Path(root) / "cluster", shards=2)
        alone = ClickHouseShards(Path(root) / "alone", shards=1)
        try:
            cluster.up()
            alone.up()
            measure(args.runs, batches, cluster.urls, alone.urls[0])
        finally:
            cluster.down()
            alone.down()


def measure(runs: int, batches: Batches, shard_urls: list[str], single_url: str) -> None:
    migrations = load_migrations()
    single_rates, cluster_rates = [], []
    for run in range(1, runs + 1):
        database = f"bench_shards_{uuid.uuid4().hex[:8]}"
        config = ClickHouseConfig(
            url=shard_urls[0], database=database, cluster=ClickHouseShards.NAME, shards=shard_urls
        )
        for shard in shard_configs(config):
            apply_migrations(connect(shard), local_database(database), migrations)
        create_distributed(connect(config), config)
        single = ClickHouseConfig(url=single_url, database=database)
        apply_migrations(connect(single), database, migrations)
        single_rate = run_sink(functools.partial(connect, single), f"{database}.events", batches)
        cluster_rate = run_sink(functools.partial(connect, config), f"{database}.events", batches)
        stored = connect(config).query(f"SELECT count() FROM {database}.events").result_rows
        assert stored[0][0] == sum(len(batch[2]) for batch in batches), stored
        single_rates.append(single_rate)
        cluster_rates.append(cluster_rate)
        print(
            f"run {run}: one server {single_rate:,.0f} rows/s; two shards through "
            f"Distributed {cluster_rate:,.0f} rows/s; ratio {cluster_rate / single_rate:.2f}",
            flush=True,
        )
    ratios = [c / s for c, s in zip(cluster_rates, single_rates, strict=True)]
    print(
        f"median of {runs}: one server {statistics.median(single_rates):,.0f} rows/s; two "
        f"shards {statistics.median(cluster_rates):,.0f} rows/s; ratio two shards / one "
        f"{statistics.median(ratios):.2f}"
    )


if __name__ == "__main__":
    main()
