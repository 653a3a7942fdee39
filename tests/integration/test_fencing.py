"""The store's side of fencing a zombie worker (outputs/clickhouse/fencing.py), on the
real ClickHouse: a stalled insert of another worker holding a partition just gained is
cancelled and stores nothing, even when its rest arrives afterwards; inserts of other
partitions or of the worker itself are left alone. (The fenced insert path's storing and
splitting is in test_poison.py.)"""

from __future__ import annotations

import base64
import contextlib
import socket
import time
from collections.abc import Iterator
from urllib.parse import quote, urlparse

import pytest
from clickhouse_connect.driver.client import Client

from pipeline.commands.init import apply_migrations, load_migrations
from pipeline.config import ClickHouseConfig, Settings
from pipeline.outputs.clickhouse import InsertService
from pipeline.outputs.clickhouse.client import connect, password
from pipeline.outputs.clickhouse.fencing import MAX_QUERY_SIZE, cancel_inserts_of_others
from tests.integration.helpers import provision, scalar

pytestmark = pytest.mark.integration

ROWS = 5_000
"""Rows of the first part of a stalled insert: over MAX_QUERY_SIZE bytes, so that the
server has registered the query."""


class StalledInsert:
    """An insert of which the client sent only the first part, like a worker frozen
    mid-body: raw HTTP with a chunked body, as the client library sends it."""

    def __init__(self, settings: Settings, table: str, query_id: str, first: int) -> None:
        url = urlparse(settings.clickhouse.url)
        self.sock = socket.create_connection((url.hostname, url.port or 8123))
        secret = f"{settings.clickhouse.user}:{password(settings.clickhouse)}".encode()
        query = quote(f"INSERT INTO {table} FORMAT TSV")
        self.sock.sendall(
            f"POST /?query={query}&query_id={query_id}&max_query_size={MAX_QUERY_SIZE} "
            f"HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            f"Authorization: Basic {base64.b64encode(secret).decode()}\r\n\r\n".encode()
        )
        self._chunk(range(first, first + ROWS))
        self.first = first

    def _chunk(self, numbers: range) -> None:
        data = b"".join(b"%d\n" % n for n in numbers)
        self.sock.sendall(b"%x\r\n" % len(data) + data + b"\r\n")

    def finish(self) -> bool:
        """Send the rest; True if the server said the insert succeeded."""
        with contextlib.suppress(OSError):
            self._chunk(range(self.first + ROWS, self.first + 2 * ROWS))
            self.sock.sendall(b"0\r\n\r\n")
            self.sock.settimeout(10)
            return self.sock.recv(64).startswith(b"HTTP/1.1 200")
        return False


def running(client: Client, query_id: str) -> bool:
    sql = f"SELECT count() FROM system.processes WHERE query_id = '{query_id}'"
    return bool(scalar(client, sql))


def wait_running(client: Client, *query_ids: str) -> None:
    deadline = time.monotonic() + 10
    while not all(running(client, q) for q in query_ids):
        assert time.monotonic() < deadline, "the stalled inserts were never registered"
        time.sleep(0.05)


@pytest.fixture
def store(isolated_settings: Settings) -> Iterator[tuple[Settings, Client, InsertService, str]]:
    client = provision(isolated_settings)
    table = f"{isolated_settings.clickhouse.database}.stalled"
    client.command(f"CREATE TABLE {table} (n UInt64) ENGINE = MergeTree ORDER BY n")
    service = InsertService(lambda: connect(isolated_settings.clickhouse), worker_id="me")
    yield isolated_settings, client, service, table


def test_a_stalled_insert_of_a_gained_partition_is_cancelled_and_stores_nothing(
    store: tuple[Settings, Client, InsertService, str],
) -> None:
    settings, client, service, table = store
    zombie = StalledInsert(settings, table, "auditpipe-insert-zombie1-events:1.3-00aa", 0)
    wait_running(client, "auditpipe-insert-zombie1-events:1.3-00aa")

    assert cancel_inserts_of_others(service, "me", "events", {3}) == 1

    assert not running(client, "auditpipe-insert-zombie1-events:1.3-00aa")
    assert not zombie.finish()  # the zombie resumes: its rest arrives too late
    assert scalar(client, f"SELECT count() FROM {table}") == 0


def test_inserts_of_other_partitions_and_the_workers_own_are_left_alone(
    store: tuple[Settings, Client, InsertService, str],
) -> None:
    settings, client, service, table = store
    ids = [
        "auditpipe-insert-other-events:4-00bb",  # another partition
        "auditpipe-insert-other-deferred:3-00cc",  # the same number, the deferred topic
        "auditpipe-insert-me-events:3-00dd",  # this worker's own
        "someone-elses-query-3",  # not an insert of ours
    ]
    inserts = [StalledInsert(settings, table, q, n * 2 * ROWS) for n, q in enumerate(ids)]
    wait_running(client, *ids)

    assert cancel_inserts_of_others(service, "me", "events", {3}) == 0

    assert all(i.finish() for i in inserts)
    assert scalar(client, f"SELECT count() FROM {table}") == len(ids) * 2 * ROWS


def test_the_ingest_user_cancels_its_workers_inserts_and_sees_no_one_elses(
    isolated_settings: Settings,
) -> None:
    """With the deployment's grants (deploy/clickhouse/users.xml): ingest reads its own
    running queries only, and kills them without a KILL QUERY grant."""
    settings = isolated_settings
    admin = provision(settings)
    apply_migrations(admin, "audit", load_migrations())
    try:
        as_ingest = {
            **settings.clickhouse.model_dump(),
            "user": "ingest",
            "password": "ingest-local",
        }
        ingest = settings.model_copy(update={"clickhouse": ClickHouseConfig(**as_ingest)})
        service = InsertService(lambda: connect(ingest.clickhouse), worker_id="me")
        table = "audit.events (event_id)"
        zombie = StalledInsert(ingest, table, "auditpipe-insert-zombie-events:2-00ee", 0)
        other = f"{settings.clickhouse.database}.stalled"
        admin.command(f"CREATE TABLE {other} (n UInt64) ENGINE = MergeTree ORDER BY n")
        analyst = StalledInsert(settings, other, "auditpipe-insert-admin-events:2-00ff", 0)
        wait_running(admin, "auditpipe-insert-zombie-events:2-00ee")
        wait_running(admin, "auditpipe-insert-admin-events:2-00ff")

        seen = service.query_rows_once("SELECT query_id FROM system.processes", {})
        assert ("auditpipe-insert-admin-events:2-00ff",) not in seen  # another user's
        assert cancel_inserts_of_others(service, "me", "events", {2}) == 1

        assert not running(admin, "auditpipe-insert-zombie-events:2-00ee")
        assert not zombie.finish()
        assert scalar(admin, "SELECT count() FROM audit.events") == 0
        # (The embedded engine then also ends the other HTTP inserts in flight, with
        # SOCKET_TIMEOUT, code 209: tried. A worker's insert ended so is retried under
        # its deduplication token; the other user's is not asserted on.)
        analyst.finish()
    finally:
        admin.command("DROP DATABASE IF EXISTS audit")
