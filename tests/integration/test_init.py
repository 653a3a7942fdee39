"""`auditpipe init` creates the topics and tables, and is safe to run twice."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from pipeline.commands.init import load_migrations
from pipeline.config import Settings
from pipeline.outputs.clickhouse.client import connect
from tests.integration.helpers import run_cli

pytestmark = pytest.mark.integration


async def _describe(settings: Settings) -> tuple[dict[str, int], str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap)
    await admin.start()
    try:
        k = settings.kafka
        names = [k.topic_events, k.topic_alerts, k.topic_deadletter, k.topic_sandboxes]
        described = await admin.describe_topics(names)
        partitions = {t["topic"]: len(t["partitions"]) for t in described}
        configs = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, k.topic_sandboxes)]
        )
        entries = configs[0].resources[0][4]
        policy = next(e[1] for e in entries if e[0] == "cleanup.policy")
        return partitions, policy
    finally:
        await admin.close()


def test_init_creates_everything_and_is_idempotent(isolated_settings: Settings) -> None:
    settings = isolated_settings
    first = run_cli(settings, "init", "--partitions", "4")
    second = run_cli(settings, "init", "--partitions", "4")

    assert first.returncode == 0, first.stderr
    names = ", ".join(m.name for m in load_migrations())
    assert f"migrations applied: {names}" in first.stdout
    assert second.returncode == 0, second.stderr
    assert "topics created: none (all exist)" in second.stdout
    assert "migrations applied: none (up to date)" in second.stdout

    partitions, policy = asyncio.run(_describe(settings))
    assert set(partitions.values()) == {4} and len(partitions) == 4
    assert policy == "compact"

    client = connect(settings.clickhouse)
    db = settings.clickhouse.database
    tables = dict(
        client.query(
            f"SELECT name, concat(partition_key, ' | ', sorting_key) FROM system.tables "
            f"WHERE database = '{db}'"
        ).result_rows
    )
    assert tables["events"] == "toDate(ts) | tenant, sandbox_id, ts, seq"
    assert {"events", "deadletter", "schema_migrations"} <= set(tables)
    assert client.query(f"SELECT count() FROM {db}.schema_migrations").result_rows == [
        (len(load_migrations()),)
    ]
