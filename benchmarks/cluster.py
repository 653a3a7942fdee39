"""End-to-end throughput on a three-broker Kafka cluster against the single broker, in
the same run.

    python benchmarks/cluster.py [--events 300000] [--runs 3]

Needs the local stack (`auditpipe stack up`, or AUDITPIPE_KAFKA_BOOTSTRAP /
AUDITPIPE_CLICKHOUSE_URL) for ClickHouse and the single broker, and starts a cluster of
its own (``pipeline/stack/cluster.py``: three KRaft nodes on loopback ports, each broker
and controller, under a temporary home). Each run, in turn, on fresh topics and
databases:

* single: the stack's broker, topics of replication factor 1;
* cluster: the three nodes, topics of replication factor 3, ``min.insync.replicas`` 2;
  producers use acks=all in both, so here each write waits for a second broker.

For each: the SDK publisher's events/s (acknowledged by Kafka), and a real `auditpipe
worker`'s events/s from its start to the last row stored (default configuration). All
brokers share this machine's cores with the worker and ClickHouse, so the cluster's
figure is a floor, not what three machines would do. It prints medians over the runs and
the ratio to the single broker.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import e2e
from benchmarks._common import compare_modes
from pipeline.commands.init import apply_migrations, create_topics, load_migrations
from pipeline.config import Settings, load_settings
from pipeline.outputs.clickhouse.client import connect
from pipeline.stack.cluster import KafkaCluster

MODES = ("single", "cluster")


def mode_settings(mode: str, base: Settings, cluster: KafkaCluster, home: Path) -> Settings:
    data = base.model_dump()
    if mode == "cluster":
        data["kafka"] |= {"bootstrap": cluster.bootstrap, "replication_factor": 3}
    tag = uuid.uuid4().hex[:8]
    settings = e2e.isolated(Settings(**data), tag, home / tag)
    asyncio.run(create_topics(settings))
    apply_migrations(connect(settings.clickhouse), settings.clickhouse.database, load_migrations())
    return settings


def one_run(
    mode: str, base: Settings, cluster: KafkaCluster, home: Path, events: int
) -> tuple[float, float]:
    settings = mode_settings(mode, base, cluster, home)
    published = asyncio.run(e2e.measure_publish_sdk(settings, events, 200))
    stored, _ = e2e.measure_worker(e2e.variant(settings, "w"), connect(settings.clickhouse), events)
    return published, stored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    base = load_settings()
    home = Path(tempfile.mkdtemp(prefix="auditpipe-cluster-bench-"))
    cluster = KafkaCluster(home / "cluster", base.home.resolve() / "kafka" / "libs", heap="1g")
    try:
        cluster.up()
        compare_modes(
            MODES, args.runs, args.events, lambda m: one_run(m, base, cluster, home, args.events)
        )
    finally:
        cluster.down()


if __name__ == "__main__":
    main()
