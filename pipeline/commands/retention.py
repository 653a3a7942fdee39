"""``auditpipe retention show|apply|seal``: how long rows are kept (the tables' TTLs,
``pipeline/chain/retention.py``), and the signed seals of what is about to expire
(``pipeline/chain/seals.py``) that let ``verify`` tell expiry from deletion."""

from __future__ import annotations

import argparse
import time
from typing import Any

from pipeline.commands.base import EXIT_OK, UsageError
from pipeline.config import Settings


def add_parser(sub: Any) -> None:
    retention = sub.add_parser(
        "retention",
        help="show or apply how long rows are kept (TTL); seal what is about to expire",
        description="show: the configured periods and each table's TTL. apply: set the "
        "TTLs. seal: sign the chain ranges expiring within --margin-hours (and advance each "
        "sandbox's horizon), so `verify` tells expiry from deletion; run it hourly.",
    )
    retention.add_argument("action", choices=("show", "apply", "seal"))
    retention.add_argument(
        "--margin-hours",
        type=float,
        default=24.0,
        help="seal: what expires within this many hours (default 24; more than the "
        "interval between runs)",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.chain import retention
    from pipeline.outputs.clickhouse.client import connect

    if args.action == "seal":
        return _seal(args, settings)
    from pipeline.outputs.clickhouse.distributed import local_database, shard_configs

    database = settings.clickhouse.database
    config = settings.retention
    servers = [settings.clickhouse]
    if settings.clickhouse.cluster:  # the TTLs are the shards' tables' (a Distributed
        # table has none): on each shard's <database>_local, shown of the first
        database = local_database(database)
        servers = list(shard_configs(settings.clickhouse))
    clients = [connect(server) for server in servers]
    if args.action == "apply":
        for server, client in zip(servers, clients, strict=True):
            changed = retention.apply(client, database, config)
            on = f" on {server.url}" if settings.clickhouse.cluster else ""
            print(f"retention applied to {', '.join(changed)}{on}")
    client = clients[0]
    print(
        f"configured: debug {config.debug_days:g} d, info {config.info_days:g} d, "
        f"security-relevant {config.security_days:g} d, dead letters "
        f"{config.deadletter_days:g} d, alerts {config.alerts_days:g} d, rollups "
        f"{config.rollup_days:g} d"
    )
    for table, ttl in retention.current(client, database).items():
        print(f"{database}.{table}: TTL {ttl or '(none)'}")
    return EXIT_OK


def _seal(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.chain import seals
    from pipeline.chain.checkpoints import NoKey, load_key
    from pipeline.outputs.clickhouse.client import connect

    if args.margin_hours <= 0:
        raise UsageError("--margin-hours must be positive")
    try:
        key = load_key(settings, create=False)
    except NoKey as exc:
        raise UsageError(f"cannot seal: {exc} (the key `verify` checks seals with)") from None
    started = time.monotonic()
    report = seals.seal(
        connect(settings.clickhouse),
        settings.clickhouse.database,
        settings.retention,
        key,
        settings.checkpoints.key_id,
        margin_s=args.margin_hours * 3600,
    )
    print(
        f"sealed {report.items:,} chain items expiring within {args.margin_hours:g} h in "
        f"{report.seals:,} seals; {report.horizons:,} sandbox horizons advanced "
        f"({time.monotonic() - started:.2f} s)"
    )
    return EXIT_OK
