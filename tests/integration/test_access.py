"""Least privilege on the embedded server (deploy/clickhouse/users.xml): the sink runs as
`ingest`, which cannot change or remove stored rows; a tenant's analyst sees only that
tenant's rows."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from pipeline.chclient import connect
from pipeline.config import ClickHouseConfig, Settings
from pipeline.publish import EventPublisher
from pipeline.schema import codec_for
from pipeline.schema.event import normalize_event
from tests.integration.helpers import WorkerProcess, provision, scalar, wait_for_rows

pytestmark = pytest.mark.integration

INGEST = ("ingest", "ingest-local")
ANALYST_ACME = ("analyst_acme", "analyst-local")


def as_user(settings: Settings, user: str, password: str) -> Client:
    config = ClickHouseConfig(
        **{**settings.clickhouse.model_dump(), "user": user, "password": password}
    )
    return connect(config)


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
        with WorkerProcess(settings):

            async def publish() -> None:
                async with EventPublisher(settings, codec_for(settings)) as publisher:
                    await publisher.add_many(events)

            asyncio.run(publish())
            wait_for_rows(admin, "audit.events", len(events))

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
