"""``auditpipe init``: create the Kafka topics and apply the ClickHouse migrations.

Both steps are idempotent: existing topics are kept, and a migration runs once (the
applied ones are recorded in ``<database>.schema_migrations`` with their checksums).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from clickhouse_connect.driver.client import Client

from pipeline.commands.base import EXIT_OK
from pipeline.config import Settings
from pipeline.kafka_clients import client_args
from pipeline.resources import resource_path

_MIGRATION_FILE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


async def create_topics(settings: Settings) -> list[str]:
    """Create the pipeline's topics that do not exist yet; returns the ones created."""
    kafka = settings.kafka
    compacted = {"cleanup.policy": "compact"}
    wanted = {
        kafka.topic_events: {},
        # Messages over a rate limit, stored later; the same partitions as the events
        # topic (a message keeps its partition and the worker holds both together).
        kafka.topic_deferred: {},
        kafka.topic_alerts: {},
        kafka.topic_deadletter: {},
        kafka.topic_sandboxes: compacted,
        # The second copy of the signed checkpoints: kept as long as security events, so
        # verify can find checkpoints removed from ClickHouse (never compacted).
        kafka.topic_checkpoints: {"retention.ms": str(round(365 * 86_400_000 * 1.1))},
        **{topic: {} for topic in settings.rules.routes.values()},
    }
    admin = AIOKafkaAdminClient(**client_args(kafka), client_id="auditpipe-init")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, kafka.partitions, kafka.replication_factor, topic_configs=configs)
            for name, configs in wanted.items()
            if name not in existing
        ]
        created = []
        for topic in missing:
            try:
                await admin.create_topics([topic])
                created.append(topic.name)
            except TopicAlreadyExistsError:  # another init raced us
                pass
        return created
    finally:
        await admin.close()


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def statements(self, database: str) -> list[str]:
        text = self.sql.replace("${database}", database)
        body = "\n".join(line for line in text.splitlines() if not line.strip().startswith("--"))
        return [part.strip() for part in body.split(";") if part.strip()]


def load_migrations(folder: Path | None = None) -> list[Migration]:
    folder = folder or resource_path("deploy", "clickhouse", "migrations")
    migrations = []
    for path in sorted(folder.glob("*.sql")):
        match = _MIGRATION_FILE.match(path.name)
        if match is None:
            raise ValueError(f"{path}: migration files are named NNNN_name.sql")
        migrations.append(Migration(int(match[1]), path.stem, path.read_text()))
    return migrations


def apply_migrations(client: Client, database: str, migrations: list[Migration]) -> list[str]:
    """Apply the migrations not applied yet, in order; returns the names applied."""
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    client.command(
        f"CREATE TABLE IF NOT EXISTS {database}.schema_migrations "
        "(version UInt32, name String, checksum String, applied_at DateTime DEFAULT now()) "
        "ENGINE = MergeTree ORDER BY version"
    )
    rows = client.query(f"SELECT version, checksum FROM {database}.schema_migrations").result_rows
    applied = {int(version): checksum for version, checksum in rows}
    done = []
    for migration in migrations:
        if migration.version in applied:
            if applied[migration.version] != migration.checksum:
                print(
                    f"warning: migration {migration.name} changed after it was applied; "
                    "write a new migration instead of editing an applied one"
                )
            continue
        for statement in migration.statements(database):
            client.command(statement)
        client.insert(
            f"{database}.schema_migrations",
            [[migration.version, migration.name, migration.checksum]],
            column_names=["version", "name", "checksum"],
        )
        done.append(migration.name)
    return done


def add_parser(sub: Any) -> None:
    init = sub.add_parser("init", help="create the Kafka topics and ClickHouse tables (idempotent)")
    init.add_argument("--partitions", type=int, help="partitions per topic (default 6)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.partitions:
        settings.kafka.partitions = args.partitions
    from pipeline.outputs.clickhouse.client import connect

    created = asyncio.run(create_topics(settings))
    print(f"kafka: topics created: {', '.join(created) or 'none (all exist)'}")
    if settings.clickhouse.cluster:
        return _init_cluster(settings)
    from pipeline.outputs.clickhouse.distributed import refuse_unsharded_init

    client = connect(settings.clickhouse)
    refuse_unsharded_init(client, settings.clickhouse)
    applied = apply_migrations(client, settings.clickhouse.database, load_migrations())
    print(f"clickhouse: migrations applied: {', '.join(applied) or 'none (up to date)'}")
    return EXIT_OK


def _init_cluster(settings: Settings) -> int:
    """The migrations on every shard's ``<database>_local``, then the Distributed tables
    over them on the server of clickhouse.url (outputs/clickhouse/distributed.py)."""
    from pipeline.outputs.clickhouse import distributed
    from pipeline.outputs.clickhouse.client import connect

    config = settings.clickhouse
    front = connect(config)
    distributed.check_cluster(front, config)
    local = distributed.local_database(config.database)
    migrations = load_migrations()
    for shard in distributed.shard_configs(config):
        applied = apply_migrations(connect(shard), local, migrations)
        print(
            f"clickhouse: {shard.url} {local}: migrations applied: "
            f"{', '.join(applied) or 'none (up to date)'}"
        )
    changed = distributed.create_distributed(front, config)
    print(
        f"clickhouse: {config.url} {config.database}: Distributed tables over cluster "
        f"{config.cluster} created or updated: {', '.join(changed) or 'none (up to date)'}"
    )
    return EXIT_OK
