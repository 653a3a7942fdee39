"""Stage state kept in Faust tables, so it survives a worker restart and a rebalance.

Each table is written through Faust (local store plus changelog topic) into the partition
of the events it describes; when the worker gains a partition, the partition's state is
rebuilt from the table, which Faust has recovered from the changelog by then (into
rocksdb or memory, per ``worker.table_store``). A table takes the partition to write to
from Faust's current event, so each write sets it to an event of the right partition.
"""

from __future__ import annotations

import contextlib
import time
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np
from faust.streams import _current_event  # the table API's partition comes from it

from pipeline.rules.engine import DetectionEngine
from pipeline.stages.dedup import UNKNOWN_CONTENT, DedupWindow

PARTITION_SEPARATOR = b"\x1e"
PAIRS = b"kc"
"""Marks a dedup record of (key, content digest) pairs; older records hold keys alone."""


def _pairs(value: bytes, with_contents: bool) -> list[tuple[int, int]]:
    """The (key, content) pairs of a persisted dedup record."""
    numbers = np.frombuffer(value, dtype=np.uint64).tolist()
    if with_contents:
        return list(zip(numbers[0::2], numbers[1::2], strict=True))
    return [(key, UNKNOWN_CONTENT) for key in numbers]


class DedupPersistence:
    """Keeps the dedup window in a Faust table.

    Each batch's new keys become one record per partition and time bucket; a bucket that
    leaves the window is deleted (a tombstone).
    """

    def __init__(self, table: Any, window: DedupWindow) -> None:
        self.table = table
        self.window = window
        self.loaded: set[int] = set()
        self.keys: dict[tuple[int, int], list[bytes]] = {}

    def prepare(self, partitions: set[int], assigned: set[int]) -> None:
        """Before a batch: drop partitions we lost, load the ones we (re)gained."""
        for partition in self.loaded - assigned:
            self.window.forget(partition)
            self.loaded.discard(partition)
        missing = partitions - self.loaded
        if not missing:
            return
        now = time.time()
        for key, value in list(self.table.data.items()):
            parts = key.split(b":")
            partition, bucket = int(parts[0]), int(parts[1])
            if partition in missing:
                self.window.load(partition, bucket, _pairs(value, parts[3:] == [PAIRS]), now)
                self.keys.setdefault((partition, bucket), []).append(key)
        self.loaded |= missing

    def persist(self, event_of_partition: dict[int, Any]) -> None:
        """After a batch: write its new keys and delete what left the window.

        Through the table itself, so the local store and the changelog stay in step; a
        table takes the partition to write to from Faust's current event, so that is set
        to an event of the batch from the right partition for each write.
        """
        for (partition, bucket), pairs in self.window.take_added().items():
            key = f"{partition}:{bucket}:{time.time_ns()}:".encode() + PAIRS
            with _as_current(event_of_partition[partition]):
                self.table[key] = np.asarray(pairs, dtype=np.uint64).tobytes()
            self.keys.setdefault((partition, bucket), []).append(key)
        for partition, bucket in self.window.take_gone():
            for key in self.keys.pop((partition, bucket), []):
                with _as_current(event_of_partition[partition]), contextlib.suppress(KeyError):
                    del self.table[key]


@contextlib.contextmanager
def _as_current(event: Any) -> Iterator[None]:
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


class RuleStatePersistence:
    """Keeps the windows of threshold and sequence rules in a Faust table.

    One record per (partition, rule, key), rewritten when the key's window changed and
    deleted when it emptied: after a batch that caught up with the partitions, and under
    load once per ``rules.state_interval_s``, so a key that changes in every batch is
    written once per interval. A record of a rule that no longer exists, or whose
    definition changed, is deleted when its partition is loaded.
    """

    def __init__(self, table: Any, engine_of: Any, interval_s: float) -> None:
        self.table = table
        self.interval_s = interval_s
        self.written_at = time.monotonic()
        self.engine_of = engine_of
        """A callable giving the engine in force (a reload replaces it)."""
        self.loaded: set[int] = set()
        self.last_event: dict[int, Any] = {}
        """Per partition held: an event of it, which a write into the partition needs."""
        self.written: set[bytes] = set()
        """Keys in the table (a delete of any other would still send a tombstone)."""

    def prepare(
        self, partitions: set[int], assigned: set[int], event_of_partition: dict[int, Any]
    ) -> None:
        engine: DetectionEngine = self.engine_of()
        for partition in self.loaded - assigned:
            engine.forget_partition(partition)
            self.loaded.discard(partition)
            prefix = str(partition).encode() + PARTITION_SEPARATOR
            self.written = {key for key in self.written if not key.startswith(prefix)}
        for partition in set(self.last_event) - assigned:
            del self.last_event[partition]
        missing = partitions - self.loaded
        if not missing:
            return
        stale = []
        for key, value in list(self.table.data.items()):
            head, _, state_key = key.partition(PARTITION_SEPARATOR)
            partition = int(head)
            if partition not in missing:
                continue
            if engine.restore_state(partition, state_key.decode(), value):
                self.written.add(key)
            else:
                stale.append((partition, key))
        for partition, key in stale:
            with _as_current(event_of_partition[partition]), contextlib.suppress(KeyError):
                del self.table[key]
        self.loaded |= missing

    def persist(self, event_of_partition: dict[int, Any], now: bool) -> None:
        """After a batch: write the windows changed since the last write, if ``now`` or
        if the interval has passed."""
        self.last_event.update(event_of_partition)  # a write into a partition needs one
        if not now and time.monotonic() - self.written_at < self.interval_s:
            return
        self.written_at = time.monotonic()
        engine: DetectionEngine = self.engine_of()
        for partition, state_key, data in engine.take_state_changes():
            event = self.last_event.get(partition)
            if event is None:  # the partition went to another worker
                continue
            key = str(partition).encode() + PARTITION_SEPARATOR + state_key.encode()
            if data is None and key not in self.written:
                continue
            with _as_current(event):
                if data is None:
                    self.written.discard(key)
                    with contextlib.suppress(KeyError):
                        del self.table[key]
                else:
                    self.table[key] = data
                    self.written.add(key)
