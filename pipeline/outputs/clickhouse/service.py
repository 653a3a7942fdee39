"""Inserting into ClickHouse, retried with exponential back-off and jitter.

A failed insert that may succeed later (``retry.decide``) is retried until it succeeds or
the worker stops: the sink never drops rows. While it retries, the worker consumes
nothing more (backpressure), and offsets of rows not stored are never committed. An
insert refused for its data raises ``RowsRejected`` at once: the caller splits the block
and dead-letters the rows at fault (``sink.py``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
import threading
from collections.abc import Callable
from typing import Any

from clickhouse_connect.driver.client import Client

from pipeline.outputs.clickhouse.fencing import new_worker_id, query_id, send_insert
from pipeline.outputs.clickhouse.request_builder import InsertRequest
from pipeline.outputs.clickhouse.retry import REJECT, RowsRejected, decide, short

log = logging.getLogger(__name__)

INSERT_SETTINGS = {
    # A batch with events of many days must not fail for touching many partitions.
    "throw_on_max_partitions_per_insert_block": 0,
    # Into a Distributed table (a sharded cluster, outputs/clickhouse/distributed.py): the
    # insert returns only once every shard stored its part, so the offsets committed after
    # it are stored; no effect on a local table.
    "distributed_foreground_insert": 1,
}


class SinkStopped(Exception):
    """The worker stopped while an insert was still being retried; it was not stored."""


class InsertService:
    def __init__(
        self,
        connect: Callable[[], Client],
        *,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 10.0,
        stopping: threading.Event | None = None,
        token_key: bytes | None = None,
        fence: Callable[[], None] | None = None,
        worker_id: str | None = None,
    ) -> None:
        self._connect = connect
        self._fence = fence
        """Called in each insert attempt, once its first block is encoded: stops a worker
        whose partitions were given away while it was frozen (``worker/fence.py``,
        ``fencing.py``)."""
        self.worker_id = worker_id or new_worker_id()
        """Names this worker in its inserts' query ids (``fencing.py``)."""
        self._token_key = token_key
        """Keys the insert deduplication tokens (see ``token``)."""
        self._client: Client | None = None
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.stopping = stopping or threading.Event()
        self.retries_total = 0
        self.rows_total = 0

    def token(self, name: str) -> str:
        """The deduplication token sent for a request's token name: an HMAC of it under
        the worker's key. A name alone is predictable (``events:0@5-9:1200``): someone
        who may insert (a stolen ingest password) could insert a block under the next
        token first, and ClickHouse would then drop the real block as a duplicate."""
        if self._token_key is None:
            return name
        return hmac.new(self._token_key, name.encode(), hashlib.sha256).hexdigest()

    def insert(self, request: InsertRequest) -> None:
        token = self.token(request.dedup_token)

        settings: dict[str, Any] = {**INSERT_SETTINGS, "insert_deduplication_token": token}

        def send(client: Client) -> None:
            if request.holds:  # a new id for each attempt: the last may still be running
                settings["query_id"] = query_id(self.worker_id, request.holds)
            if self._fence is not None:
                send_insert(client, request, settings, self._fence)
                return
            client.insert(
                request.table,
                request.columns,
                column_names=list(request.column_names),
                column_oriented=True,
                settings=settings,
            )

        self._retrying(f"insert of {request.rows} rows into {request.table}", send)
        self.rows_total += request.rows

    def query_rows(self, sql: str, parameters: dict[str, Any]) -> list[tuple[Any, ...]]:
        """A query's rows, retried like an insert."""
        found: list[tuple[Any, ...]] = []
        self._retrying("query", lambda client: found.extend(_rows(client, sql, parameters)))
        return found

    def query_rows_once(self, sql: str, parameters: dict[str, Any]) -> list[tuple[Any, ...]]:
        """A query's rows, tried once: for what may fail without holding the worker up
        (it raises what the query raised)."""
        client = self._client or self._connect()
        self._client = client
        return _rows(client, sql, parameters)

    def query_column(self, sql: str, parameters: dict[str, Any]) -> list[Any]:
        """The first column of a query's rows, retried like an insert."""
        return [row[0] for row in self.query_rows(sql, parameters)]

    def _retrying(self, what: str, call: Callable[[Client], None]) -> None:
        delay = self.retry_initial_s
        attempt = 0
        while True:
            try:
                client = self._client or self._connect()
                self._client = client
                call(client)
                if attempt:
                    log.warning("%s succeeded after %d retries", what, attempt)
                return
            except Exception as exc:
                if decide(exc) == REJECT:
                    raise RowsRejected(what, exc) from exc
                attempt += 1
                self.retries_total += 1
                self._client = None
                log.warning(
                    "%s failed (attempt %d, next in %.1f s): %s", what, attempt, delay, short(exc)
                )
            # Full jitter: workers that failed together do not retry together.
            if self.stopping.wait(random.uniform(delay / 2, delay)):
                raise SinkStopped(f"{what}: not done, the worker is stopping")
            delay = min(delay * 2, self.retry_max_s)


def _rows(client: Client, sql: str, parameters: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in client.query(sql, parameters=parameters).result_rows]
