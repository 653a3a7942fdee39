"""The store's side of fencing a zombie worker: its insert in flight is cancelled.

``worker/fence.py`` asks the group coordinator, before each insert, whether the worker
still holds the partitions its batch began under. A worker frozen *after* that answer
(SIGSTOP, a paused VM) would still send its insert when it resumes, after another worker
took its partitions over and stored the same messages again. Two things close that
window on the store's side:

1. **The check is as late as it can be, and the store sees the insert at once.** The
   insert's first block is encoded before the fence is asked (``send_insert``), so the
   answer is followed by nothing but socket writes; and the insert carries a
   ``max_query_size`` of 16 KiB, so ClickHouse registers the query (and can cancel it)
   once its first 16 KiB have arrived, not after 256 KiB (its default parse buffer; a
   smaller body is one socket write).
2. **The new owner cancels the old owner's insert.** Every insert of events carries a
   ``query_id`` naming the worker and the partitions it holds
   (``auditpipe-insert-<worker>-<source>:<p.p.p>-<random>``). A worker that gains
   partitions, before it reads what the store holds of them (``progress.py``), kills
   every running insert of *another* worker that holds one of them, and waits until
   they are gone. A killed insert stores nothing (ClickHouse commits a block at its end;
   tried: a stalled insert killed, its rest then sent, left no row), and its worker's
   retry meets the fence and exits. An insert that completed before the kill is read as
   stored and skipped.

Killing a live worker's insert is safe too: it is retried under the same deduplication
token. The workers must share one ClickHouse user (the deployment's ``ingest``), which
needs ``SELECT ON system.processes`` with a row filter to its own queries
(``deploy/clickhouse/users.xml``, ``docs/access.md``): KILL QUERY reads that table, and
a user may kill its own queries without a KILL QUERY grant. Without the grant the step
is skipped with a warning, never retried: it must not hold a partition up. What remains
is a freeze that lands between the coordinator's answer and the first socket write, a
few microseconds per insert.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Collection, Generator
from typing import Any, Protocol

from clickhouse_connect.driver.client import Client

from pipeline.outputs.clickhouse.request_builder import InsertRequest

log = logging.getLogger(__name__)

QUERY_PREFIX = "auditpipe-insert-"
MAX_QUERY_SIZE = 16 << 10
"""Bytes ClickHouse reads to parse an insert's query before it registers it; above the
longest insert statement of the project (the events table's, about 1 KiB)."""
CANCEL_WAIT_S = 10.0
"""How long a worker gaining partitions waits for the killed inserts to go."""


def new_worker_id() -> str:
    return secrets.token_hex(6)


def query_id(worker: str, holds: str) -> str:
    """The query id of an insert of ``holds`` (``source:p.p.p``) by ``worker``.

    >>> holder(query_id("ab12", "events:0.3"))
    ('ab12', 'events', frozenset({0, 3}))
    """
    return f"{QUERY_PREFIX}{worker}-{holds}-{secrets.token_hex(4)}"


def holder(qid: str) -> tuple[str, str, frozenset[int]] | None:
    """The worker, source and partitions of an insert's query id (None: not ours).

    >>> holder("auditpipe-insert-w1-deferred:7-0f0f") , holder("other") is None
    (('w1', 'deferred', frozenset({7})), True)
    """
    if not qid.startswith(QUERY_PREFIX):
        return None
    parts = qid[len(QUERY_PREFIX) :].split("-")
    if len(parts) != 3 or ":" not in parts[1]:
        return None
    source, _, listed = parts[1].partition(":")
    try:
        return parts[0], source, frozenset(int(p) for p in listed.split(".") if p)
    except ValueError:
        return None


def send_insert(
    client: Client, request: InsertRequest, settings: dict[str, Any], fence: Callable[[], None]
) -> None:
    """Insert ``request``, asking ``fence`` once its first block is encoded, just before
    the request goes out (see the module docstring); a local encoding error is raised
    as itself, and what the fence raises propagates (the insert is retried)."""
    settings = {**settings, "max_query_size": MAX_QUERY_SIZE}
    context = client.create_insert_context(
        request.table, list(request.column_names), column_oriented=True, data=request.columns
    )
    context.compression = client.write_compression
    transform: Any = client._transform  # type: ignore[attr-defined]  # its own encoder
    blocks = transform.build_insert(context)
    first = next(blocks, b"")
    if context.insert_exception is not None:
        raise context.insert_exception
    fence()  # raises, or exits the worker, when it may not insert

    def body() -> Generator[bytes, None, None]:
        yield first
        yield from blocks

    try:
        client.raw_insert(
            "",  # no table: the body starts with the INSERT statement, as the client's own
            insert_block=body(),
            settings=settings,
            compression=context.compression if isinstance(context.compression, str) else None,
        )
    except Exception:
        if context.insert_exception is not None:
            raise context.insert_exception from None
        raise


class OnceQuerier(Protocol):
    def query_rows_once(self, sql: str, parameters: dict[str, Any]) -> list[tuple[Any, ...]]: ...


def cancel_inserts_of_others(
    service: OnceQuerier,
    worker: str,
    source: str,
    partitions: Collection[int],
    wait_s: float = CANCEL_WAIT_S,
) -> int:
    """Kill the running inserts of other workers holding one of ``partitions`` of
    ``source``, and wait until they are gone; returns how many were killed.

    Best effort: a failure (ClickHouse unreachable, the user without ``SELECT ON
    system.processes``) is logged and the worker goes on, fenced by the coordinator
    alone; it must never hold a partition up."""
    try:
        return _cancel(service, worker, source, set(partitions), wait_s)
    except Exception as exc:
        log.warning(
            "could not look for inserts of a frozen worker (%s: %s); the store-side fence "
            "is off for partitions %s of %s (docs/access.md: the ingest user's grants)",
            type(exc).__name__,
            str(exc).splitlines()[0][:200] if str(exc) else "",
            sorted(partitions),
            source,
        )
        return 0


def _cancel(service: OnceQuerier, worker: str, source: str, wanted: set[int], wait_s: float) -> int:
    running = service.query_rows_once(
        "SELECT query_id FROM system.processes WHERE startsWith(query_id, {prefix:String})",
        {"prefix": QUERY_PREFIX},
    )
    doomed = []
    for (qid,) in running:
        found = holder(qid)
        if found and found[0] != worker and found[1] == source and found[2] & wanted:
            doomed.append(qid)
    if not doomed:
        return 0
    log.warning(
        "cancelling %d insert(s) of another worker that held partitions %s of %s "
        "(a worker frozen past its session)",
        len(doomed),
        sorted(wanted),
        source,
    )
    ids = {"ids": doomed}
    service.query_rows_once("KILL QUERY WHERE query_id IN {ids:Array(String)} ASYNC", ids)
    deadline = time.monotonic() + wait_s
    sql = "SELECT count() FROM system.processes WHERE query_id IN {ids:Array(String)}"
    while time.monotonic() < deadline:
        if not service.query_rows_once(sql, ids)[0][0]:
            return len(doomed)
        time.sleep(0.05)
    log.warning("cancelled inserts still running after %.0f s; going on", wait_s)
    return len(doomed)
