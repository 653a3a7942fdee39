"""The ClickHouse sink: one batch per Kafka partition, flushed at each checkpoint.

``add`` collects events per partition; a partition's batch is inserted as soon as it holds
``max_rows`` rows or ``max_bytes`` of input, and ``flush`` inserts what is left. The
worker calls ``flush`` before it acknowledges the Kafka messages the events came from, so
an offset is committed only for rows that are stored.

>>> sink = ClickHouseSink(RecordingService(), table="audit.events", max_rows=2,
...                       max_bytes=1 << 20)
>>> sink.add(0, [_ev(0, 1)], size_bytes=100)
>>> sink.service.requests  # below the bounds: nothing inserted yet
[]
>>> sink.add(1, [_ev(1, 5), _ev(1, 6)], size_bytes=200)  # partition 1 is full
>>> [(r.rows, r.dedup_token) for r in sink.service.requests]
[(2, 'events:1:5-6:2')]
>>> sink.flush()  # the checkpoint: partition 0's one row
1
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from pipeline.schema.event import Event
from pipeline.sink.clickhouse.request_builder import InsertRequest, build_event_request


class Inserter(Protocol):
    def insert(self, request: InsertRequest) -> None: ...


class ClickHouseSink:
    def __init__(self, service: Inserter, *, table: str, max_rows: int, max_bytes: int) -> None:
        self.service = service
        self.table = table
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self._batches: dict[int, list[Event]] = {}
        self._bytes: dict[int, int] = {}

    def add(self, partition: int, events: Sequence[Event], *, size_bytes: int) -> None:
        batch = self._batches.setdefault(partition, [])
        batch.extend(events)
        self._bytes[partition] = self._bytes.get(partition, 0) + size_bytes
        if len(batch) >= self.max_rows or self._bytes[partition] >= self.max_bytes:
            self._flush_partition(partition)

    def pending_rows(self) -> int:
        return sum(len(batch) for batch in self._batches.values())

    def flush(self) -> int:
        """Insert every pending batch; returns the rows stored."""
        return sum(self._flush_partition(p) for p in list(self._batches))

    def _flush_partition(self, partition: int) -> int:
        batch = self._batches.pop(partition, [])
        self._bytes.pop(partition, None)
        for start in range(0, len(batch), self.max_rows):
            chunk = batch[start : start + self.max_rows]
            self.service.insert(build_event_request(self.table, partition, chunk))
        return len(batch)


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
