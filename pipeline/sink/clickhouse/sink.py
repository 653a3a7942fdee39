"""The ClickHouse sink: rows buffered per checkpoint, inserted in as few blocks as possible.

``add`` collects the events of each Kafka partition; ``flush`` inserts all of them as one
block (split only at ``max_rows``, and then between Kafka messages), since ClickHouse
wants few large inserts: a small insert per partition would cost a part each. The
block's dedup token names the offset range of every partition in it, so the same
messages re-sent give the same token. A batch that reaches ``max_rows`` or ``max_bytes``
is inserted at once; given an ``executor``, that insert runs in the background while the
caller decodes the next rows (one insert in flight at a time: memory stays bounded and
blocks are stored in order). ``flush`` waits until every insert is done. The worker
calls ``flush`` before it acknowledges the Kafka messages the events came from, so an
offset is committed only for rows that are stored. What is stored of a partition is
therefore always its messages up to some offset (``progress.py``).

>>> sink = ClickHouseSink(RecordingService(), table="audit.events", max_rows=3,
...                       max_bytes=1 << 20)
>>> sink.add(0, [_ev(0, 1)], size_bytes=100)
>>> sink.add(1, [_ev(1, 5)], size_bytes=100)
>>> sink.service.requests  # below the bounds: nothing inserted yet
[]
>>> sink.flush()  # the checkpoint: one block for both partitions
2
>>> [(r.rows, r.dedup_token) for r in sink.service.requests]
[(2, 'events:0@1-1,1@5-5:2')]
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor, Future
from typing import Any, Protocol

from pipeline.schema.event import Event
from pipeline.sink.clickhouse.request_builder import InsertRequest, build_event_request


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
    ) -> None:
        self.service = service
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
            request = build_event_request(self.table, events[start:end])
            start = end
            self._wait_in_flight()
            if self.executor is None:
                self.service.insert(request)
            else:
                self._in_flight = self.executor.submit(self.service.insert, request)
        self._started_since_flush += rows

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


class RecordingService:
    """An Inserter that keeps the requests (for unit tests and the doctest above)."""

    def __init__(self) -> None:
        self.requests: list[InsertRequest] = []

    def insert(self, request: InsertRequest) -> None:
        self.requests.append(request)


def _ev(partition: int, offset: int) -> dict[str, Any]:
    return {
        "event_id": f"e{offset}",
        "ts": 0,
        "tenant": "t",
        "sandbox_id": "s",
        "seq": offset,
        "category": "process",
        "action": "exec",
        "level": "info",
        "outcome": "success",
        "actor": {"user": "", "uid": None, "pid": None, "ppid": None, "process": "", "cmdline": ""},
        "object": "",
        "bytes": None,
        "attributes": {},
        "prev_hash": None,
        "hash": None,
        "kafka_partition": partition,
        "kafka_offset": offset,
    }
