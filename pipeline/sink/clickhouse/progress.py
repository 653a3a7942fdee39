"""What the sink has stored, per Kafka partition: the base of its exactly-once effect.

The sink stores whole Kafka messages, one block after the other (``sink.py``), so what is
stored of a partition is a prefix of it: every message up to the highest offset stored.
A materialized view keeps that offset per partition (``events_sink_offsets``, migration
0007) as part of each insert. When the worker gains a partition, it reads the offset and
skips the messages up to it, which a crash after their insert and before their offset
commit would otherwise store again.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol


class Querier(Protocol):
    def query_rows(self, sql: str, parameters: dict[str, Any]) -> list[tuple[Any, ...]]: ...


def stored_offsets(service: Querier, database: str, partitions: Iterable[int]) -> dict[int, int]:
    """Partition -> the highest Kafka offset stored in ``<database>.events``."""
    wanted = sorted(partitions)
    if not wanted:
        return {}
    rows = service.query_rows(
        f"SELECT kafka_partition, max(max_offset) FROM {database}.events_sink_offsets "
        "WHERE kafka_partition IN %(partitions)s GROUP BY kafka_partition",
        {"partitions": wanted},
    )
    return {int(partition): int(offset) for partition, offset in rows}
