"""Dedup stage: drop an event whose key was already seen within the window.

The key is ``event_id`` (or ``dedup.key_fields`` joined), hashed to 64 bits with xxh3, a
stable hash (the same on every worker and run). Per Kafka partition, the window is a
series of time buckets (``dedup.window_s`` / ``dedup.buckets`` seconds each, by the
worker's clock). The newest bucket is a Python set; older ones are frozen into sorted
numpy ``uint64`` arrays, 8 bytes a key, and a batch is looked up in each with one
vectorised binary search. Buckets older than the window are dropped.

State survives a restart and a rebalance through a Faust table with a changelog topic:
each batch's new keys are written as one packed record per partition and bucket (not a
record per event), and a partition's window is rebuilt from the table when the worker
(re)gains it.

>>> window = DedupWindow(window_s=600, buckets=10)
>>> window.check(0, [1, 2, 2, 3], now=1000.0)
[False, False, True, False]
>>> window.check(0, [3, 4], now=1100.0), window.check(1, [3], now=1100.0)
([True, False], [False])
>>> window.check(0, [1], now=1000.0 + 601)  # bucket of t=1000 has left the window
[False]
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xxhash

from pipeline.config import DedupConfig
from pipeline.schema.event import Event
from pipeline.stages.base import BatchContext


@dataclass
class _PartitionWindow:
    frozen: dict[int, np.ndarray] = field(default_factory=dict)
    """bucket number -> sorted uint64 hashes."""
    current_bucket: int = -1
    current: set[int] = field(default_factory=set)


class DedupWindow:
    """Seen-keys per partition over a sliding window of time buckets."""

    def __init__(self, window_s: float, buckets: int) -> None:
        self.bucket_s = window_s / buckets
        self.buckets = buckets
        self.partitions: dict[int, _PartitionWindow] = {}
        self.added: dict[tuple[int, int], list[int]] = {}
        """(partition, bucket) -> hashes added since the last take_added (to persist)."""
        self.gone: list[tuple[int, int]] = []
        """(partition, bucket) that left the window since the last take_gone."""

    def check(self, partition: int, hashes: Sequence[int], now: float) -> list[bool]:
        """For each hash, True if seen in the window (or earlier in this list); the new
        ones are added."""
        window = self._window(partition, now)
        seen = np.zeros(len(hashes), dtype=bool)
        if window.frozen and hashes:
            values = np.fromiter(hashes, dtype=np.uint64, count=len(hashes))
            for keys in window.frozen.values():
                at = np.searchsorted(keys, values)
                np.minimum(at, len(keys) - 1, out=at)
                seen |= keys[at] == values
        current = window.current
        added = self.added.setdefault((partition, window.current_bucket), [])
        result = seen.tolist()
        for index, key in enumerate(hashes):
            if result[index] or key in current:
                result[index] = True
            else:
                current.add(key)
                added.append(key)
        return result

    def take_gone(self) -> list[tuple[int, int]]:
        gone, self.gone = self.gone, []
        return gone

    def take_added(self) -> dict[tuple[int, int], list[int]]:
        added, self.added = self.added, {}
        return {k: v for k, v in added.items() if v}

    def expired(self, partition: int, now: float) -> list[int]:
        """Bucket numbers of the partition that left the window (and are forgotten)."""
        window = self.partitions.get(partition)
        if window is None:
            return []
        oldest = int(now // self.bucket_s) - self.buckets + 1
        gone = [b for b in window.frozen if b < oldest]
        for bucket in gone:
            del window.frozen[bucket]
        return gone

    def load(self, partition: int, bucket: int, hashes: Iterable[int], now: float) -> None:
        """Add persisted hashes (rebuilding after a restart or rebalance)."""
        window = self._window(partition, now)
        if bucket == window.current_bucket:
            window.current.update(hashes)
        elif bucket > int(now // self.bucket_s) - self.buckets:
            old = window.frozen.get(bucket)
            new = np.fromiter(hashes, dtype=np.uint64)
            merged = new if old is None else np.concatenate([old, new])
            window.frozen[bucket] = np.unique(merged)

    def forget(self, partition: int) -> None:
        self.partitions.pop(partition, None)

    def keys_held(self) -> int:
        return sum(
            len(w.current) + sum(len(a) for a in w.frozen.values())
            for w in self.partitions.values()
        )

    def _window(self, partition: int, now: float) -> _PartitionWindow:
        window = self.partitions.get(partition)
        if window is None:
            window = self.partitions[partition] = _PartitionWindow()
        bucket = int(now // self.bucket_s)
        if bucket != window.current_bucket:
            if window.current:
                keys = np.fromiter(window.current, dtype=np.uint64, count=len(window.current))
                keys.sort()
                window.frozen[window.current_bucket] = keys
            window.current = set()
            window.current_bucket = bucket
            self.gone.extend((partition, b) for b in self.expired(partition, now))
        return window


def key_hash(event: Event, fields: Sequence[str]) -> int:
    if not fields:
        return xxhash.xxh3_64_intdigest(event["event_id"].encode())
    return xxhash.xxh3_64_intdigest("\x1f".join(str(event.get(f, "")) for f in fields).encode())


class DedupStage:
    name = "dedup"

    def __init__(self, config: DedupConfig, clock: Any = time.time) -> None:
        self.config = config
        self.window = DedupWindow(config.window_s, config.buckets)
        self.clock = clock
        self.dropped = 0
        """Duplicates dropped since the last time the worker read this (then reset)."""

    def process(self, events: list[Event], ctx: BatchContext) -> list[Event]:
        if not self.config.enabled or not events:
            return events
        fields = self.config.key_fields
        now = self.clock()
        first = events[0]["kafka_partition"]
        if all(e["kafka_partition"] == first for e in events):
            seen = self.window.check(first, [key_hash(e, fields) for e in events], now)
        else:  # a chunk of several partitions: each has its own window
            seen = [False] * len(events)
            by_partition: dict[int, list[int]] = {}
            for i, e in enumerate(events):
                by_partition.setdefault(e["kafka_partition"], []).append(i)
            for partition, indexes in by_partition.items():
                hashes = [key_hash(events[i], fields) for i in indexes]
                for i, duplicate in zip(
                    indexes, self.window.check(partition, hashes, now), strict=True
                ):
                    seen[i] = duplicate
        kept = [event for event, duplicate in zip(events, seen, strict=True) if not duplicate]
        self.dropped += len(events) - len(kept)
        return kept
