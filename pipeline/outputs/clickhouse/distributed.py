"""The pipeline's tables over a sharded ClickHouse cluster (``clickhouse.cluster``).

Every shard holds the tables of the migrations in ``<database>_local``, created by the
same migrations as on one server (``auditpipe init`` applies them to each of
``clickhouse.shards``), so a cluster's tables never lag a release. The server of
``clickhouse.url`` (any of the cluster's servers) holds, under ``<database>``, a
Distributed table over each: the worker, ``verify`` and the analysts use those names
unchanged. Materialized views stay on the shards: each sees the rows its shard stores.

Invariants:

- **Events are sharded by Kafka partition** (key ``kafka_partition``: partition p goes to
  shard p mod shards). The exactly-once skip after a crash trusts the highest offset
  stored per partition (``progress.py``), written by a view on the shard that stores the
  rows. With every row of a partition on one shard, that offset and those rows are
  written by one shard's insert: a crash between two shards' parts of an insert leaves
  each partition either stored with its offset or absent with it, never "offset stored,
  rows not". A message keeps its partition on the deferred topic, so a sandbox's events
  and its deferred ones live on one shard too.
- **The sink's inserts wait for every shard** (``distributed_foreground_insert``,
  ``service.INSERT_SETTINGS``): offsets are committed only after the shards stored.
- Other tables are sharded by ``(tenant, sandbox_id)`` where they have both, else
  spread at random: no guarantee reads them per shard.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

from pipeline.config import ClickHouseConfig, ConfigError

LOCAL_SUFFIX = "_local"
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_NOT_SHARDED = ("schema_migrations",)
"""Bookkeeping of each shard's own migrations: not one table of the cluster."""


class ClusterError(ConfigError):
    """The cluster of the configuration is not the one the servers know (one line)."""


def local_database(database: str) -> str:
    """The database of the shards' own tables."""
    return database + LOCAL_SUFFIX


def sharding_key(table: str, columns: set[str]) -> str:
    if table in ("events", "events_sink_progress"):
        return "kafka_partition"
    if {"tenant", "sandbox_id"} <= columns:
        return "cityHash64(tenant, sandbox_id)"
    return "rand()"


def shard_configs(config: ClickHouseConfig) -> Iterator[ClickHouseConfig]:
    """The configuration of each shard: its url, everything else as configured."""
    for url in config.shards:
        yield config.model_copy(update={"url": url, "cluster": "", "shards": []})


def check_cluster(client: Client, config: ClickHouseConfig) -> None:
    """Raises ClusterError unless the server of ``config.url`` knows ``config.cluster``
    with as many shards as ``config.shards`` names, and ``config.database`` there holds
    no table but Distributed ones (a one-server table holds rows that a Distributed
    table of its name would replace)."""
    cluster, shards = config.cluster, len(config.shards)
    if not _NAME.match(cluster):
        raise ClusterError(f"clickhouse.cluster {cluster!r} is not a cluster name")
    known = client.query(
        "SELECT uniqExact(shard_num) FROM system.clusters WHERE cluster = {c:String}",
        parameters={"c": cluster},
    ).result_rows[0][0]
    if not known:
        raise ClusterError(
            f"clickhouse.cluster {cluster!r} is not in the remote_servers of {config.url}"
        )
    if known != shards:
        raise ClusterError(
            f"clickhouse.cluster {cluster!r} has {known} shards but clickhouse.shards "
            f"names {shards}: name one endpoint per shard"
        )
    holding = client.query(
        "SELECT name, engine FROM system.tables WHERE database = {db:String} "
        "AND engine != 'Distributed' ORDER BY name",
        parameters={"db": config.database},
    ).result_rows
    if holding:  # a one-server table holds rows there: replacing it would drop them
        name, engine = holding[0]
        raise ClusterError(
            f"{config.database}.{name} on {config.url} is a {engine} table, not a "
            f"Distributed one ({len(holding)} such): move its rows to the shards or use "
            "another clickhouse.database for the cluster; nothing was changed"
        )


def refuse_unsharded_init(client: Client, config: ClickHouseConfig) -> None:
    """Raises ClusterError when ``database`` holds Distributed tables (a cluster's front)
    but no cluster is configured: the one-server migrations would fail half-way on it."""
    engines = client.query(
        "SELECT count() FROM system.tables WHERE database = {db:String} AND engine = 'Distributed'",
        parameters={"db": config.database},
    ).result_rows[0][0]
    if engines:
        raise ClusterError(
            f"{config.database} on {config.url} holds Distributed tables (a sharded cluster): "
            "set clickhouse.cluster and clickhouse.shards"
        )


@dataclass(frozen=True)
class LocalTable:
    name: str
    columns: tuple[tuple[str, str], ...]


def local_tables(client: Client, local: str) -> list[LocalTable]:
    """The shard's tables that hold rows (not its views), with their columns in order."""
    rows = client.query(
        "SELECT t.name, groupArray((c.name, c.type)) FROM system.tables AS t "
        "INNER JOIN (SELECT * FROM system.columns WHERE database = {db:String} "
        "ORDER BY table, position) AS c ON c.table = t.name "
        "WHERE t.database = {db:String} AND t.engine NOT IN ('MaterializedView', 'View') "
        "GROUP BY t.name ORDER BY t.name",
        parameters={"db": local},
    ).result_rows
    return [
        LocalTable(name, tuple((str(n), str(t)) for n, t in cols))
        for name, cols in rows
        if name not in _NOT_SHARDED
    ]


def create_distributed(client: Client, config: ClickHouseConfig) -> list[str]:
    """Create (or bring up to the shards' columns) a Distributed table in ``database``
    over each table of ``<database>_local``; returns the tables created or replaced.
    Reads the local tables from ``client``'s own server, which must be a shard. Only a
    Distributed table is ever replaced (it holds no rows; ``check_cluster`` refused a
    database holding any other)."""
    cluster, database = config.cluster, config.database
    local = local_database(database)
    tables = local_tables(client, local)
    if not tables:
        raise ClusterError(
            f"{config.url} holds no {local} tables: it must be one of clickhouse.shards"
        )
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    current = {table.name: table for table in local_tables(client, database)}
    changed = []
    for table in tables:
        if current.get(table.name) == table:
            continue
        names = {name for name, _ in table.columns}
        key = sharding_key(table.name, names)
        client.command(
            f"CREATE OR REPLACE TABLE {database}.{table.name} AS {local}.{table.name} "
            f"ENGINE = Distributed('{cluster}', '{local}', '{table.name}', {key})"
        )
        changed.append(table.name)
    return changed
