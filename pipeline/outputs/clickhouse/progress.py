"""What the sink has stored, per Kafka partition: the base of its exactly-once effect.

The sink stores whole Kafka messages, one block after the other (``sink.py``), so what is
stored of a partition is a prefix of it: every message up to the highest offset stored.
A materialized view keeps that offset per insert and partition (``events_sink_progress``,
migration 0013) as part of each insert. When the worker gains a partition, it reads the
offset and skips the messages up to it, which a crash after their insert and before
their offset commit would otherwise store again.

That offset decides what the worker skips, so it must not be something the ingest role
can write: ingest may insert rows into ``events``, and a row with ``kafka_offset`` near
2^64 would make every later message look stored, skipped and committed. Each row
therefore carries ``sink_mac``, an HMAC-SHA256 (first 16 bytes) of the topic, partition
and offset under the worker's key (the checkpoint key, which the database never sees);
one MAC per message, not per event. A worker trusts the highest offset that is below the
partition's end offset (asked of the broker) and has a valid MAC; rows beyond the end or
with a wrong MAC are counted and ignored. When none is valid it skips nothing: the
insert deduplication tokens still absorb a replay of the same blocks.

>>> signer = ProgressSigner(b"k" * 32, "audit.events")
>>> signer.mac(3, 41) == signer.mac(3, 41) != signer.mac(3, 42)
True
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)

MAC_BYTES = 16
CANDIDATES = 100
"""Rows read per partition, highest first, to find the highest valid one (forged rows
above it are skipped; a flood of them beyond this makes the worker skip nothing)."""


class Querier(Protocol):
    def query_rows(self, sql: str, parameters: dict[str, Any]) -> list[tuple[Any, ...]]: ...


class ProgressSigner:
    """The MAC of each stored message's (topic, partition, offset). ``deferred``: the
    topic is the deferred one (``stages/fairness.py``), whose rows are marked
    ``deferred`` and whose progress is kept apart (migration 0016)."""

    def __init__(self, key: bytes, topic: str, *, deferred: bool = False) -> None:
        self._key = key
        self._topic = topic
        self.deferred = deferred
        self._last: tuple[int, int, bytes] = (-1, -1, b"")

    @property
    def source(self) -> str:
        """The topic's kind, as insert tokens and query ids name it."""
        return "deferred" if self.deferred else "events"

    def mac(self, partition: int, offset: int) -> bytes:
        last = self._last
        if last[0] == partition and last[1] == offset:  # the events of one message
            return last[2]
        message = f"{self._topic}\x1f{partition}\x1f{offset}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()[:MAC_BYTES]
        self._last = (partition, offset, digest)
        return digest


@dataclass
class StoredOffsets:
    """Per partition, the highest offset known stored (-1: trust nothing, skip nothing)."""

    upto: dict[int, int] = field(default_factory=dict)
    rejected: int = 0
    """Progress rows ignored: beyond the partition's end, or with a wrong MAC."""


def stored_offsets(
    service: Querier,
    database: str,
    partitions: Iterable[int],
    ends: Mapping[int, int],
    signer: ProgressSigner,
) -> StoredOffsets:
    """The highest offset stored per partition, from signed progress rows below ``ends``
    (each partition's end offset: the next offset the broker will write)."""
    wanted = sorted(partitions)
    found = StoredOffsets({partition: -1 for partition in wanted})
    if not wanted:
        return found
    rows = service.query_rows(
        f"SELECT kafka_partition, max_offset, mac FROM {database}.events_sink_progress "
        "WHERE kafka_partition IN %(partitions)s AND deferred = %(deferred)s "
        f"ORDER BY kafka_partition, max_offset DESC LIMIT {CANDIDATES} BY kafka_partition",
        {"partitions": wanted, "deferred": signer.deferred},
    )
    for partition, offset, mac in rows:
        partition, offset = int(partition), int(offset)
        if found.upto[partition] >= 0:
            continue  # the highest valid one is known
        end = ends.get(partition)
        valid = end is not None and offset < end
        valid = valid and hmac.compare_digest(signer.mac(partition, offset), _bytes(mac))
        if valid:
            found.upto[partition] = offset
        else:
            found.rejected += 1
    if found.rejected:
        log.error(
            "ignored %d progress rows of %s.events_sink_progress beyond a partition's end "
            "or with a wrong MAC (rows inserted by someone other than a worker, or by a "
            "worker of this group with another checkpoints.key: every worker of a group "
            "needs the same key)",
            found.rejected,
            database,
        )
    return found


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("latin-1")
