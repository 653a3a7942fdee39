"""Least privilege on the embedded server (deploy/clickhouse/users.xml): the sink runs as
`ingest`, which cannot change or remove stored rows; a tenant's analyst sees only that
tenant's rows."""

from __future__ import annotations

import asyncio
import re
import time
import uuid

import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from pipeline.chain.checkpoints import last_checkpoints
from pipeline.collect.publisher import EventPublisher
from pipeline.config import Settings
from pipeline.outputs.clickhouse.client import connect
from pipeline.schema import codec_for
from pipeline.schema.event import normalize_event
from tests.integration.helpers import (
    WorkerProcess,
    provision,
    scalar,
    wait_for_rows,
    wait_until,
    with_clickhouse,
)

pytestmark = pytest.mark.integration

INGEST = ("ingest", "ingest-local")
ANALYST_ACME = ("analyst_acme", "analyst-local")


def as_user(settings: Settings, user: str, password: str) -> Client:
    return connect(with_clickhouse(settings, user=user, password=password).clickhouse)


def test_ingest_cannot_alter_and_analysts_see_their_tenant_only(
    isolated_settings: Settings,
) -> None:
    settings = isolated_settings
    settings.clickhouse.database = "audit"  # the database users.xml grants on
    try:
        as_user(settings, *INGEST)
    except DatabaseError:
        pytest.skip("this server does not have the users of deploy/clickhouse/users.xml")
    admin = provision(settings)
    try:
        now = time.time_ns() // 1_000_000
        events = [
            normalize_event(
                {
                    "tenant": tenant,
                    "sandbox_id": f"sb-{tenant}",
                    "seq": n + 1,
                    "ts": now + n,
                    "category": "file",
                    "action": "read",
                    "object": f"/{uuid.uuid4().hex}",
                },
                now_ms=now,
            )
            for tenant in ("acme", "globex")
            for n in range(50)
        ]
        settings.clickhouse.user, settings.clickhouse.password = INGEST
        with WorkerProcess(settings) as worker:

            async def publish() -> None:
                async with EventPublisher(
                    settings, codec_for(settings.kafka.schema_registry_url)
                ) as publisher:
                    await publisher.add_many(events)

            asyncio.run(publish())
            wait_for_rows(admin, "audit.events", len(events))
            # What the views fill as ingest inserts (they run as their definer, not as
            # ingest, which cannot read events): the rollups and the sink's progress.
            wait_until(
                lambda: (
                    scalar(admin, "SELECT sum(events) FROM audit.events_per_minute") == len(events)
                ),
                30,
                "the rollup view did not take ingest's rows",
            )
            assert scalar(admin, "SELECT count() FROM audit.events_sink_progress") > 0
            assert "failed (attempt" not in worker.log(), worker.log()[-3000:]
            # Its grants let it look for a frozen worker's inserts when it gains partitions.
            assert "store-side fence is off" not in worker.log(), worker.log()[-3000:]

        ingest = as_user(settings, *INGEST)
        for statement in (
            "ALTER TABLE audit.events DELETE WHERE 1",
            "ALTER TABLE audit.events UPDATE object = 'x' WHERE 1",
            "ALTER TABLE audit.events ADD COLUMN evil UInt8",
            "TRUNCATE TABLE audit.events",
            "DROP TABLE audit.events",
            "SELECT count() FROM audit.events",
        ):
            with pytest.raises(DatabaseError, match=r"ACCESS_DENIED|Not enough privileges"):
                ingest.command(statement)
        # What it may read: where each sandbox's checkpoint chain goes on (its newest
        # checkpoint, or its horizon once they expired).
        assert (
            last_checkpoints(
                lambda sql, params: ingest.query(sql, parameters=params).result_rows,
                "audit",
                {("acme", "sb-none")},
            )
            == {}
        )

        analyst = as_user(settings, *ANALYST_ACME)
        tenants = analyst.query("SELECT DISTINCT tenant FROM audit.events").result_rows
        assert tenants == [("acme",)]
        assert scalar(analyst, "SELECT count() FROM audit.events") == 50
        assert scalar(analyst, "SELECT count() FROM audit.events WHERE tenant = 'globex'") == 0
        for statement in (
            "INSERT INTO audit.events (event_id, tenant) VALUES ('x', 'acme')",
            "SELECT count() FROM audit.deadletter",
        ):
            with pytest.raises(
                DatabaseError, match=r"ACCESS_DENIED|Not enough privileges|READONLY"
            ):
                analyst.command(statement)
        assert scalar(admin, "SELECT count() FROM audit.events") == len(events)
    finally:
        admin.command("DROP DATABASE IF EXISTS audit")


def test_every_table_shows_an_analyst_one_tenant_or_is_refused(
    isolated_settings: Settings,
) -> None:
    """Enumerates the database's tables (every migration's, views too): for a tenant
    analyst each one returns only that tenant's rows, or refuses; no table function
    reads files, URLs or other servers."""
    settings = isolated_settings
    settings.clickhouse.database = "audit"
    try:
        as_user(settings, *ANALYST_ACME)
    except DatabaseError:
        pytest.skip("this server does not have the users of deploy/clickhouse/users.xml")
    admin = provision(settings)
    try:
        tables = [row[0] for row in admin.query(
            "SELECT name FROM system.tables WHERE database = 'audit' ORDER BY name"
        ).result_rows]  # fmt: skip
        with_tenant = set()
        for table in tables:
            columns = dict(admin.query(
                "SELECT name, type FROM system.columns WHERE database = 'audit' AND table = "
                "%(t)s", parameters={"t": table}
            ).result_rows)  # fmt: skip
            engine = scalar(admin, f"SELECT engine FROM system.tables WHERE database = 'audit' "
                                   f"AND name = '{table}'")  # fmt: skip
            if "tenant" not in columns or "View" in str(engine):
                continue
            with_tenant.add(table)
            # Times of tomorrow (rows with old ones would expire at insert, and a seal's
            # keep_until is its TTL), counts of 1 (a SummingMergeTree drops rows whose
            # sums are all zero).
            filled = {n: "now64(3) + toIntervalDay(1)" for n, t in columns.items()
                      if t.startswith("DateTime")}  # fmt: skip
            filled |= {n: "1" for n, t in columns.items() if re.match(r"U?Int|Float", t)}
            for tenant in ("acme", "globex"):
                names = ", ".join(["tenant", *filled])
                values = ", ".join([f"'{tenant}'", *filled.values()])
                admin.command(f"INSERT INTO audit.{table} ({names}) SELECT {values}")
        assert {"events", "alerts", "chain_checkpoints", "chain_links"} <= with_tenant

        analyst = as_user(settings, *ANALYST_ACME)
        readable = set()
        for table in tables:
            try:
                rows = scalar(analyst, f"SELECT count() FROM audit.{table}")
            except DatabaseError as exc:
                assert re.search(r"ACCESS_DENIED|Not enough privileges", str(exc)), exc
                continue
            readable.add(table)
            assert table in with_tenant, f"{table}: readable, but has no tenant to filter on"
            tenants = analyst.query(f"SELECT DISTINCT tenant FROM audit.{table}").result_rows
            assert tenants == [("acme",)], f"{table}: {tenants}"
            assert rows == scalar(admin, f"SELECT count() FROM audit.{table} WHERE tenant = 'acme'")
        # The tables the cookbook has analysts query are readable (their tenant's rows).
        assert {"events", "alerts", "chain_checkpoints", "chain_links"} <= readable

        for statement in (
            "SELECT * FROM file('/etc/passwd', 'LineAsString')",
            "SELECT * FROM url('http://127.0.0.1:1/', 'LineAsString')",
            "SELECT * FROM remote('127.0.0.1', 'audit', 'events')",
            "SELECT * FROM cluster('default', 'audit', 'events')",
            "SELECT * FROM executable('id', 'LineAsString', 'x String')",
            "SELECT count() FROM audit.events SETTINGS additional_table_filters = "
            "{'audit.events': '1'}",
        ):
            try:
                result = analyst.query(statement).result_rows
            except DatabaseError:
                continue
            # A query that ran must not have widened the analyst's view.
            assert "additional_table_filters" in statement, statement
            assert result == [(scalar(admin, "SELECT count() FROM audit.events WHERE "
                                             "tenant = 'acme'"),)]  # fmt: skip
    finally:
        admin.command("DROP DATABASE IF EXISTS audit")
