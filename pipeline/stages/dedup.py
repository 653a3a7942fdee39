"""Dedup stage: drop an event whose key was already seen within the window.

The key is the event's ``tenant``, ``sandbox_id`` and ``event_id`` (or ``dedup.key_fields``
in place of ``event_id``), hashed to 64 bits with xxh3, a stable hash (the same on every
worker and run). Ids come from sources a tenant controls, so the tenant and sandbox are
always part of the key: one tenant reusing another's ids (or sandbox names) can never make
the other's events look like duplicates.

With each key the window keeps a 64-bit digest of the event's content (its canonical
bytes and chain hashes). A key seen again with the same content is a duplicate (a replay
after a crash, a collector re-send) and is dropped, counted. A key seen again with *other*
content is not a replay but a rewrite: it is dead-lettered as ``conflicting_duplicate``
(so the evidence is kept) and raises an integrity alert (``AP-INT-REPLAY``).

Per Kafka partition, the window is a series of time buckets (``dedup.window_s`` /
``dedup.buckets`` seconds each, by the worker's clock). The newest bucket is a dict;
older ones are frozen into sorted numpy ``uint64`` arrays (key and content, 16 bytes an
event), and a batch is looked up in each with one vectorised binary search. Buckets older
than the window are dropped.

State survives a restart and a rebalance through a Faust table with a changelog topic:
each batch's new keys are written as one packed record per partition and bucket (not a
record per event), and a partition's window is rebuilt from the table when the worker
(re)gains it.

>>> window = DedupWindow(window_s=600, buckets=10)
>>> window.check(0, [1, 2, 2, 3], [10, 20, 20, 30], now=1000.0)
[0, 0, 1, 0]
>>> window.check(0, [3, 4], [31, 40], now=1100.0), window.check(1, [3], [30], now=1100.0)
([2, 0], [0])
>>> window.check(0, [1], [10], now=1000.0 + 601)  # bucket of t=1000 has left the window
[0]
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xxhash

from pipeline.chain.hashing import canonical as _py_canonical
from pipeline.config import DedupConfig
from pipeline.native import speedups
from pipeline.rules.alerts import make_alert
from pipeline.rules.integrity import INTEGRITY_RULES, INTEGRITY_TAGS
from pipeline.schema.deadletter import Provenance
from pipeline.schema.event import Event
from pipeline.stages.base import BatchContext, StageBase

NEW, DUPLICATE, CONFLICT = 0, 1, 2
"""What `DedupWindow.check` says of each key."""
UNKNOWN_CONTENT = 0
"""The content of a key persisted before digests were kept: any content matches it."""
KEY_SEPARATOR = "\x1f"

_canonical = speedups.canonical if speedups is not None else _py_canonical


@dataclass
class _PartitionWindow:
    frozen: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    """bucket number -> (sorted uint64 key hashes, their content digests)."""
    current_bucket: int = -1
    current: dict[int, int] = field(default_factory=dict)
    """key hash -> content digest, of the newest bucket."""


class DedupWindow:
    """Seen keys (and their contents' digests) per partition over a sliding window of
    time buckets."""

    def __init__(self, window_s: float, buckets: int) -> None:
        self.bucket_s = window_s / buckets
        self.buckets = buckets
        self.partitions: dict[int, _PartitionWindow] = {}
        self.added: dict[tuple[int, int], list[tuple[int, int]]] = {}
        """(partition, bucket) -> (key, content) added since the last take_added."""
        self.gone: list[tuple[int, int]] = []
        """(partition, bucket) that left the window since the last take_gone."""

    def check(
        self, partition: int, keys: Sequence[int], contents: Sequence[int], now: float
    ) -> list[int]:
        """For each key: NEW (then added), DUPLICATE (seen with this content, in the
        window or earlier in this list) or CONFLICT (seen with other content)."""
        window = self._window(partition, now)
        count = len(keys)
        known = np.zeros(count, dtype=np.uint64)
        seen = np.zeros(count, dtype=bool)
        if window.frozen and count:
            values = np.fromiter(keys, dtype=np.uint64, count=count)
            for frozen_keys, frozen_contents in window.frozen.values():
                at = np.searchsorted(frozen_keys, values)
                np.minimum(at, len(frozen_keys) - 1, out=at)
                hit = (frozen_keys[at] == values) & ~seen
                known[hit] = frozen_contents[at[hit]]
                seen |= hit
        current = window.current
        added = self.added.setdefault((partition, window.current_bucket), [])
        result = [NEW] * count
        was_seen, digests = seen.tolist(), known.tolist()
        for index, key in enumerate(keys):
            content = contents[index]
            if was_seen[index]:
                stored = digests[index]
            elif key in current:
                stored = current[key]
            else:
                current[key] = content
                added.append((key, content))
                continue
            same = stored in (content, UNKNOWN_CONTENT)
            result[index] = DUPLICATE if same else CONFLICT
        return result

    def take_gone(self) -> list[tuple[int, int]]:
        gone, self.gone = self.gone, []
        return gone

    def take_added(self) -> dict[tuple[int, int], list[tuple[int, int]]]:
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

    def load(
        self, partition: int, bucket: int, pairs: Iterable[tuple[int, int]], now: float
    ) -> None:
        """Add persisted (key, content) pairs (rebuilding after a restart or rebalance)."""
        window = self._window(partition, now)
        if bucket == window.current_bucket:
            for key, content in pairs:
                window.current.setdefault(key, content)
        elif bucket > int(now // self.bucket_s) - self.buckets:
            listed = list(pairs)
            keys = np.fromiter((k for k, _ in listed), dtype=np.uint64, count=len(listed))
            contents = np.fromiter((c for _, c in listed), dtype=np.uint64, count=len(listed))
            old = window.frozen.get(bucket)
            if old is not None:
                keys = np.concatenate([old[0], keys])
                contents = np.concatenate([old[1], contents])
            window.frozen[bucket] = _sorted_unique(keys, contents)

    def forget(self, partition: int) -> None:
        self.partitions.pop(partition, None)

    def keys_held(self) -> int:
        return sum(
            len(w.current) + sum(len(k) for k, _ in w.frozen.values())
            for w in self.partitions.values()
        )

    def _window(self, partition: int, now: float) -> _PartitionWindow:
        window = self.partitions.get(partition)
        if window is None:
            window = self.partitions[partition] = _PartitionWindow()
        bucket = int(now // self.bucket_s)
        if bucket != window.current_bucket:
            if window.current:
                size = len(window.current)
                keys = np.fromiter(window.current.keys(), dtype=np.uint64, count=size)
                contents = np.fromiter(window.current.values(), dtype=np.uint64, count=size)
                window.frozen[window.current_bucket] = _sorted_unique(keys, contents)
            window.current = {}
            window.current_bucket = bucket
            self.gone.extend((partition, b) for b in self.expired(partition, now))
        return window


def _sorted_unique(keys: np.ndarray, contents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keys sorted for binary search, each once (its first content), contents aligned."""
    order = np.argsort(keys, kind="stable")
    keys, contents = keys[order], contents[order]
    first = np.ones(len(keys), dtype=bool)
    first[1:] = keys[1:] != keys[:-1]
    return keys[first], contents[first]


def key_hash(event: Event, fields: Sequence[str]) -> int:
    """The 64-bit dedup key: tenant, sandbox and event_id (or the key fields)."""
    if not fields:
        text = f"{event['tenant']}\x1f{event['sandbox_id']}\x1f{event['event_id']}"
    else:
        named = (str(event.get(f, "")) for f in fields)
        text = KEY_SEPARATOR.join((event["tenant"], event["sandbox_id"], *named))
    return _xxh3(text.encode())


def content_digest(event: Event, seed: int = 0) -> int:
    """A 64-bit digest of what the event says (its canonical bytes and chain hashes),
    never UNKNOWN_CONTENT. ``seed`` is secret (derived from the worker's key): a sandbox
    that knows the digest function could otherwise search for a changed event with its
    original's digest and have the rewrite dropped as a plain duplicate."""
    chained = (event["prev_hash"] or b"-") + (event["hash"] or b"-")
    return _xxh3(_canonical(event) + chained, seed) or 1


_xxh3 = xxhash.xxh3_64_intdigest


class DedupStage(StageBase):
    name = "dedup"

    def __init__(self, config: DedupConfig, clock: Any = time.time, secret: bytes = b"") -> None:
        self.config = config
        self.seed = int.from_bytes(hashlib.sha256(b"dedup content\x00" + secret).digest()[:8])
        """The content digests' secret seed (stable across restarts: persisted digests
        stay comparable)."""
        self.window = DedupWindow(config.window_s, config.buckets)
        self.clock = clock

    def process(self, events: list[Event], ctx: BatchContext) -> list[Event]:
        if not self.config.enabled or not events:
            return events
        fields = self.config.key_fields
        now = self.clock()
        seed = self.seed
        first = events[0]["kafka_partition"]
        if all(e["kafka_partition"] == first for e in events):
            keys = [key_hash(e, fields) for e in events]
            digests = [content_digest(e, seed) for e in events]
            status = self.window.check(first, keys, digests, now)
        else:  # a chunk of several partitions: each has its own window
            status = [NEW] * len(events)
            by_partition: dict[int, list[int]] = {}
            for i, e in enumerate(events):
                by_partition.setdefault(e["kafka_partition"], []).append(i)
            for partition, indexes in by_partition.items():
                keys = [key_hash(events[i], fields) for i in indexes]
                contents = [content_digest(events[i], seed) for i in indexes]
                checked = self.window.check(partition, keys, contents, now)
                for i, said in zip(indexes, checked, strict=True):
                    status[i] = said
        if max(status) == NEW:  # the common case: nothing seen before
            return events
        kept = [event for event, said in zip(events, status, strict=True) if said == NEW]
        conflicts = [event for event, said in zip(events, status, strict=True) if said == CONFLICT]
        for event in conflicts:
            _conflict(event, ctx)
        ctx.count("events_deduplicated", len(events) - len(kept) - len(conflicts))
        return kept


def _conflict(event: Event, ctx: BatchContext) -> None:
    """A key seen before with other content: kept as a dead letter, and alerted on."""
    where = Provenance(ctx.source_topic, event["kafka_partition"], event["kafka_offset"], None)
    ctx.dead.event(
        where,
        "conflicting_duplicate",
        f"event_id {event['event_id']!r} of {event['tenant']}/{event['sandbox_id']} was "
        "seen before with other content",
        event,
    )
    rule_id, title = INTEGRITY_RULES["replay"]
    ts = event["ts"]
    ctx.alerts.append(
        make_alert(
            rule_id,
            title,
            "critical",
            INTEGRITY_TAGS,
            event["tenant"],
            event["sandbox_id"],
            ts,
            ts,
            1,
            [event["event_id"]],
        )
    )
