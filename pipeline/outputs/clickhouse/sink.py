"""The ClickHouse sink: rows buffered until the batch is flushed, inserted in as few blocks
as possible.

``add`` collects the events of each Kafka partition; ``flush`` inserts all of them as one
block (split only at ``max_rows``, and then between Kafka messages), since ClickHouse
wants few large inserts: a small insert per partition would cost a part each. The
block's dedup token names the offset range of every partition in it, so the same
messages re-sent give the same token. A batch that reaches ``max_rows`` or ``max_bytes``
is inserted at once; given an ``executor``, that insert runs in the background while the
caller decodes the next rows (one insert in flight at a time: memory stays bounded and
blocks are stored in order). ``flush`` waits until every insert is done.

A block ClickHouse refuses for its data (``retry.py``: it can never succeed) is split in
halves until the rows at fault stand alone; each of those goes to ``on_rejected`` (the
worker stores and publishes it as a dead letter) before the next half is inserted, so
the rows of a partition are still stored, or dead-lettered, in offset order. One bad row
costs about 2 log2(block) inserts; the other rows are stored. The worker
calls ``flush`` before it acknowledges the Kafka messages the events came from, so an
offset is committed only for rows that are stored. What is stored of a partition is
therefore always its messages up to some offset (``progress.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from typing import Protocol

from pipeline.outputs.clickhouse.progress import ProgressSigner
from pipeline.outputs.clickhouse.request_builder import InsertRequest, build_event_request
from pipeline.outputs.clickhouse.retry import RowsRejected, short
from pipeline.schema.event import Event

Rejected = Callable[[Sequence[Event], str], None]
"""Takes rows ClickHouse refused for good, with the reason; must store them durably (as
dead letters) before it returns."""


class Inserter(Protocol):
    def insert(self, request: InsertRequest) -> None: ...


class ClickHouseSink:
    def __init__(
        self,
        service: Inserter,
        *,
        table: str,
        max_rows: int,
        max_bytes: int,
        executor: Executor | None = None,
        on_rejected: Rejected | None = None,
        signer: ProgressSigner | None = None,
    ) -> None:
        self.service = service
        self.on_rejected = on_rejected
        self.signer = signer
        self.table = table
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.executor = executor
        self._batches: dict[int, list[Event]] = {}
        self._rows = 0
        self._bytes = 0
        self._in_flight: Future[None] | None = None
        self._started_since_flush = 0

    def add(self, partition: int, events: Sequence[Event], *, size_bytes: int) -> None:
        self._batches.setdefault(partition, []).extend(events)
        self._rows += len(events)
        self._bytes += size_bytes
        if self._rows >= self.max_rows or self._bytes >= self.max_bytes:
            self._start_inserts()

    def would_insert(self, rows: int, size_bytes: int) -> bool:
        """Whether adding this many rows and bytes starts an insert at once."""
        return self._rows + rows >= self.max_rows or self._bytes + size_bytes >= self.max_bytes

    def pending_rows(self) -> int:
        return self._rows

    def flush(self) -> int:
        """Insert everything pending and wait for every insert; returns the rows stored
        since the last flush. Raises what a failed insert raised."""
        self._start_inserts()
        self._wait_in_flight()
        stored, self._started_since_flush = self._started_since_flush, 0
        return stored

    def _start_inserts(self) -> None:
        batches, self._batches = self._batches, {}
        rows, self._rows, self._bytes = self._rows, 0, 0
        events = [e for p in sorted(batches) for e in batches[p]]
        start = 0
        while start < rows:
            end = _message_end(events, min(rows, start + self.max_rows))
            block = events[start:end]
            # Built here, while the insert in flight is still sending: the columns of the
            # next block overlap the last one's I/O.
            request = build_event_request(self.table, block, self.signer)
            start = end
            self._wait_in_flight()
            if self.executor is None:
                self._insert(block, request)
            else:
                self._in_flight = self.executor.submit(self._insert, block, request)
        self._started_since_flush += rows

    def _insert(self, events: Sequence[Event], request: InsertRequest | None = None) -> None:
        """Insert a block; one refused for its data is split until the bad rows stand
        alone (see the module docstring)."""
        try:
            self.service.insert(request or build_event_request(self.table, events, self.signer))
        except RowsRejected as exc:
            if self.on_rejected is None:
                raise
            if len(events) == 1:
                self.on_rejected(events, short(exc.cause))
                return
            middle = len(events) // 2
            self._insert(events[:middle])
            self._insert(events[middle:])

    def _wait_in_flight(self) -> None:
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            in_flight.result()


def _message_end(events: Sequence[Event], end: int) -> int:
    """``end`` moved forward past the rest of the Kafka message it cuts: a message's events
    are stored in one block, so what is stored of a partition is always whole messages."""
    last = events[end - 1]
    where = (last["kafka_partition"], last["kafka_offset"])
    while (
        end < len(events) and (events[end]["kafka_partition"], events[end]["kafka_offset"]) == where
    ):
        end += 1
    return end
