"""The pipeline over two ClickHouse shards behind Distributed tables (no replicas: the
embedded engine runs no Keeper, deploy/clickhouse/cluster/README.md): `init` creates the
shards' tables and the Distributed ones, the worker writes through them exactly once
(also across a kill -9), each shard holds whole Kafka partitions with their progress,
`verify` reads through them and finds a row deleted on one shard, and each tenant's
analyst reads all of its tenant's rows and no other's through the front."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from pipeline.chain.verify import verify
from pipeline.commands.init import apply_migrations, load_migrations
from pipeline.config import Settings
from pipeline.outputs.clickhouse.client import connect
from pipeline.outputs.clickhouse.distributed import local_database, shard_configs
from pipeline.outputs.clickhouse.request_builder import (
    EVENT_COLUMNS,
    REPEAT_COLUMNS,
    build_event_columns,
)
from pipeline.outputs.clickhouse.service import INSERT_SETTINGS
from pipeline.sim.simulate import FleetSimulator
from pipeline.stack.cluster import ClickHouseShards
from tests.integration.helpers import (
    WorkerProcess,
    collect_events,
    run_cli,
    scalar,
    wait_for_rows,
    wait_until,
    with_clickhouse,
)

pytestmark = pytest.mark.integration

EVENTS = 6000


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseShards]:
    made = ClickHouseShards(tmp_path_factory.mktemp("shards"), shards=2)
    try:
        made.up()
        yield made
    finally:
        made.down()


def on_shards(settings: Settings, shards: ClickHouseShards, database: str) -> Settings:
    data = with_clickhouse(
        settings,
        url=shards.urls[0],
        database=database,
        cluster=ClickHouseShards.NAME,
        shards=shards.urls,
    ).model_dump()
    data["kafka"] |= {"partitions": 4}
    data["redact"] |= {"enabled": False}
    return Settings(**data)


def shard_clients(settings: Settings) -> list[Client]:
    return [connect(shard) for shard in shard_configs(settings.clickhouse)]


def init(settings: Settings) -> Client:
    done = run_cli(settings, "init")
    assert done.returncode == 0, done.stderr
    assert "Distributed tables over cluster auditpipe" in done.stdout, done.stdout
    return connect(settings.clickhouse)


def test_init_refuses_a_cluster_it_does_not_match(
    shards: ClickHouseShards, isolated_settings: Settings
) -> None:
    settings = on_shards(isolated_settings, shards, "shards_mismatch")
    settings.clickhouse.shards = shards.urls[:1]
    done = run_cli(settings, "init")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "has 2 shards but clickhouse.shards names 1" in done.stderr
    settings.clickhouse.cluster = "nonesuch"
    done = run_cli(settings, "init")
    assert done.returncode == 2 and "is not in the remote_servers" in done.stderr, done.stderr


def test_init_never_replaces_a_table_that_holds_rows(
    shards: ClickHouseShards, isolated_settings: Settings
) -> None:
    """A server first used alone (`init` without a cluster) made the front of a cluster
    under the same database: its tables hold rows, and CREATE OR REPLACE would drop
    them."""
    settings = on_shards(isolated_settings, shards, "shards_clash")
    alone = connect(settings.clickhouse)
    apply_migrations(alone, "shards_clash", load_migrations())
    alone.command("INSERT INTO shards_clash.deadletter (reason) VALUES ('kept')")
    done = run_cli(settings, "init")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "is a MergeTree table, not a Distributed one" in done.stderr, done.stderr
    assert scalar(alone, "SELECT count() FROM shards_clash.deadletter") == 1
    engine = "SELECT engine FROM system.tables WHERE database = 'shards_clash' AND name = "
    assert scalar(alone, engine + "'events'") == "MergeTree"
    shard_db = "SELECT count() FROM system.databases WHERE name = 'shards_clash_local'"
    assert not scalar(alone, shard_db)  # refused before any shard was touched


def test_the_sink_writes_through_distributed_tables_exactly_once_and_verify_reads_them(
    shards: ClickHouseShards, isolated_settings: Settings, tmp_path: Path
) -> None:
    settings = on_shards(isolated_settings, shards, "shards_e2e")
    front = init(settings)
    assert init(settings) is not None  # idempotent
    database = settings.clickhouse.database
    table = f"{database}.events"
    local = local_database(database)
    events = list(FleetSimulator(8, seed=44).events(EVENTS))
    half = len(events) // 2
    collect_events(settings, tmp_path / "spool", events[:half])
    worker = WorkerProcess(settings).start()
    try:
        wait_until(lambda: scalar(front, f"SELECT count() FROM {table}") > 0, 120, "no rows")
        worker.kill()  # kill -9 after some inserts: the restart must skip what is stored
        collect_events(settings, tmp_path / "spool", events[half:])
        worker.start()
        wait_for_rows(front, table, EVENTS)
        time.sleep(2)  # a row stored twice would be there by now
    finally:
        worker.stop()
    assert scalar(front, f"SELECT count() FROM {table}") == EVENTS
    assert scalar(front, f"SELECT uniqExact(event_id) FROM {table}") == EVENTS

    # Each shard holds whole Kafka partitions (p mod 2) and their signed progress.
    for index, shard in enumerate(shard_clients(settings)):
        rows = shard.query(
            f"SELECT groupUniqArray(kafka_partition), count() FROM {local}.events"
        ).result_rows[0]
        assert rows[1] > 0 and {p % 2 for p in rows[0]} == {index}, rows
        progress = shard.query(
            f"SELECT groupUniqArray(kafka_partition) FROM {local}.events_sink_progress"
        ).result_rows[0][0]
        assert {p % 2 for p in progress} == {index}, progress

    report = verify(front, database)
    assert report.findings == [], report.findings[:5]
    assert report.chained == EVENTS, report
    cli = run_cli(settings, "verify")
    assert cli.returncode == 0, cli.stdout + cli.stderr

    # Every rule of the pack (single-event, threshold, sequence) hunts through the front.
    hunted = run_cli(settings, "hunt", "--since", "30d", "--json")
    assert hunted.returncode == 0, hunted.stderr[-2000:]

    # Retention goes to each shard's tables; a one-server init of the front is refused.
    applied = run_cli(settings, "retention", "apply")
    assert applied.returncode == 0, applied.stderr
    assert all(f"on {url}" in applied.stdout for url in shards.urls), applied.stdout
    ttl = (
        shard_clients(settings)[1]
        .query(
            f"SELECT create_table_query FROM system.tables WHERE database = '{local}' "
            "AND name = 'events'"
        )
        .result_rows[0][0]
    )
    assert "TTL" in ttl, ttl
    plain = with_clickhouse(settings, cluster="", shards=[])
    refused = run_cli(plain, "init")
    assert refused.returncode == 2 and "holds Distributed tables" in refused.stderr, refused

    # A row deleted in the middle of a chain on one shard, behind the front's back, is
    # found.
    second = shard_clients(settings)[1]
    victim = second.query(
        f"SELECT tenant, sandbox_id, seq FROM {local}.events WHERE seq = 100 LIMIT 1"
    ).result_rows[0]
    second.command(
        f"ALTER TABLE {local}.events DELETE WHERE tenant = {{t:String}} "
        f"AND sandbox_id = {{s:String}} AND seq = {{q:UInt64}}",
        parameters={"t": victim[0], "s": victim[1], "q": victim[2]},
        settings={"mutations_sync": 2},
    )
    found = {(f.kind, f.sandbox_id, f.seq) for f in verify(front, database).findings}
    assert ("deleted", victim[1], 101) in found, found


def test_each_tenant_analyst_reads_its_own_rows_through_the_front(
    shards: ClickHouseShards, isolated_settings: Settings, tmp_path: Path
) -> None:
    """On a cluster (the users of ``users_for_shards``, the remote_servers' secret), the
    worker runs as ``ingest`` and each analyst reads through the Distributed tables all
    of its tenant's rows, from both shards, and none of another's; the shards' tables
    read directly show the same filter, and ``remote()`` is refused."""
    settings = on_shards(isolated_settings, shards, "audit")  # the database users.xml names
    front = init(settings)
    events = list(FleetSimulator(6, tenants=3, seed=45).events(600))
    collect_events(settings, tmp_path / "spool", events)
    with WorkerProcess(with_clickhouse(settings, user="ingest", password="ingest-local")) as worker:
        wait_for_rows(front, "audit.events", len(events))
    assert "Traceback" not in worker.log()
    sent = Counter(event["tenant"] for event in events)
    assert len(sent) == 3  # initech has no analyst: acme's and globex's never see it
    for tenant in ("acme", "globex"):  # the analysts of users.xml
        analyst = connect(
            with_clickhouse(settings, user=f"analyst_{tenant}", password="analyst-local").clickhouse
        )
        per_tenant = "SELECT tenant, count() FROM audit.events GROUP BY tenant"
        rows = analyst.query(per_tenant).result_rows
        assert dict(rows) == {tenant: sent[tenant]}, (tenant, rows)
        try:  # a query plan shipped to the shards skips the front's filters: refused
            shipped = analyst.query(per_tenant, settings={"serialize_query_plan": 1})
            assert dict(shipped.result_rows) == {tenant: sent[tenant]}, shipped.result_rows
        except DatabaseError as exc:
            assert "SUPPORT_IS_DISABLED" in str(exc), exc
        for table in ("alerts", "events_per_minute", "chain_links"):
            seen = analyst.query(f"SELECT DISTINCT tenant FROM audit.{table}").result_rows
            assert {row[0] for row in seen} <= {tenant}, (table, seen)
        local = analyst.query("SELECT DISTINCT tenant FROM audit_local.events").result_rows
        assert {row[0] for row in local} <= {tenant}, local
        with pytest.raises(Exception, match="ACCESS_DENIED"):
            analyst.query("SELECT count() FROM remote('127.0.0.1', audit_local.events)")


def test_a_retried_insert_is_stored_once_on_every_shard(
    shards: ClickHouseShards, isolated_settings: Settings
) -> None:
    """The sink retries an insert under its deduplication token; through the front the
    token reaches each shard, which stores its part once (the part a shard stored before
    a failure is not doubled by the retry)."""
    settings = on_shards(isolated_settings, shards, "shards_retry")
    front = init(settings)
    events = list(FleetSimulator(4, seed=46).events(40))
    for n, event in enumerate(events):
        event.update(owner="o", environment="dev", image="i", labels={}, severity="low")
        event["kafka_partition"], event["kafka_offset"] = n % 2, n
    columns = build_event_columns(events, repeats=False)
    names = list(EVENT_COLUMNS[:-REPEAT_COLUMNS])
    for _ in range(2):
        front.insert(
            "shards_retry.events",
            columns,
            column_names=names,
            column_oriented=True,
            settings={**INSERT_SETTINGS, "insert_deduplication_token": "retry-1"},
        )
    assert scalar(front, "SELECT count() FROM shards_retry.events") == len(events)
    counts = [
        scalar(shard, "SELECT count() FROM shards_retry_local.events")
        for shard in shard_clients(settings)
    ]
    assert counts == [len(events) // 2] * 2, counts
