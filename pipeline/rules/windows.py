"""Window state of threshold and sequence rules, per key, in event time.

Both keep, per key, the matching events of the last window (plus the allowed lateness)
sorted by event time, so an event that arrives late but within the lateness still lands
in the right windows. A window that fires gives up its events: the next alert of the
same key needs new events. Windows are inclusive: "5 in 60 s" fires for five events
exactly 60 s apart, not for 60.001 s.

>>> from pipeline.rules.language import Threshold
>>> windows = ThresholdWindows(Threshold("count", None, "gte", 3, 60_000, ()), lateness_ms=0)
>>> [windows.add(("sb",), ts, 1.0, f"e{ts}", 0) for ts in (0, 30_000)]
[None, None]
>>> windows.add(("sb",), 60_000, 1.0, "e60000", 0)
Fired(first_ts=0, last_ts=60000, count=3, value=3.0, evidence=['e0', 'e30000', 'e60000'])
"""

from __future__ import annotations

import bisect
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from pipeline.rules.language import Sequence, Threshold

DEFAULT_MAX_EVENTS = 10_000
"""Most events one key of a rule holds (``rules.max_window_events``)."""

Key = tuple[str, ...]
"""A window's key: the tenant first, then the values of the rule's ``by`` fields."""


class Watermarks:
    """The newest event time seen, per tenant.

    Event time closes suppression windows and expires rule windows. Tenants control the
    ``ts`` of their events, so each tenant's windows follow that tenant's own clock: one
    tenant's future-dated events cannot expire another tenant's windows early.
    ``everywhere`` is a floor for all tenants (a command that closes every window).

    >>> marks = Watermarks()
    >>> marks.advance("a", 5_000); marks.advance("b", 9_000); marks.advance("a", 4_000)
    >>> marks.of("a"), marks.of("b"), marks.of("c"), marks.highest
    (5000, 9000, 0, 9000)
    """

    __slots__ = ("by_tenant", "everywhere", "highest")

    def __init__(self, everywhere: int = 0) -> None:
        self.by_tenant: dict[str, int] = {}
        self.everywhere = everywhere
        self.highest = everywhere

    def of(self, tenant: str) -> int:
        return max(self.by_tenant.get(tenant, 0), self.everywhere)

    def advance(self, tenant: str, ts: int) -> None:
        if ts > self.by_tenant.get(tenant, 0):
            self.by_tenant[tenant] = ts
            if ts > self.highest:
                self.highest = ts


@dataclass
class Fired:
    first_ts: int
    last_ts: int
    count: int
    value: float
    evidence: list[str]


@dataclass
class _Entries:
    ts: list[int] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)

    def insert(self, ts: int, value: Any, event_id: str) -> int:
        at = bisect.bisect_right(self.ts, ts)
        self.ts.insert(at, ts)
        self.values.insert(at, value)
        self.ids.insert(at, event_id)
        return at

    def drop(self, start: int, end: int) -> None:
        del self.ts[start:end], self.values[start:end], self.ids[start:end]


class _Tail(_Entries):
    """A threshold key's entries, and the running aggregate of its tail window: the
    entries from ``start`` on (those within the window that ends at the newest event).

    In event-time order each entry joins and leaves the tail once, so an event costs
    O(1) (amortized) whatever the window holds; re-aggregating the window per event cost
    time quadratic in its size (4,000 events in one window: 90 s of CPU).
    """

    def __init__(
        self, ts: list[int] | None = None, values: list[Any] | None = None,
        ids: list[str] | None = None,
    ) -> None:  # fmt: skip
        super().__init__(ts or [], values or [], ids or [])
        self.start = 0
        self.total = 0.0
        """Sum of the tail's numeric values (non-finite values add nothing)."""
        self.counts: dict[Any, int] = {}
        """Occurrences of each value in the tail (its length: the distinct count)."""
        self.valid = not self.ts
        """False until the tail is aggregated again (after a restore or a late fire)."""

    def join(self, value: Any) -> None:
        """Values are stored clean (``ThresholdWindows.clean``): a float for a sum, a
        hashable value for a distinct count."""
        if value.__class__ is float:
            self.total += value
        self.counts[value] = self.counts.get(value, 0) + 1

    def leave(self, value: Any) -> None:
        if value.__class__ is float:
            self.total -= value
        left = self.counts[value] - 1
        if left:
            self.counts[value] = left
        else:
            del self.counts[value]

    def rebuild(self, start: int) -> None:
        self.start, self.total, self.counts = start, 0.0, {}
        for value in self.values[start:]:
            self.join(value)
        self.valid = True

    def trim(self, count: int) -> None:
        """Drop the ``count`` oldest entries (those inside the tail leave it)."""
        for value in self.values[self.start : count]:
            self.leave(value)
        self.drop(0, count)
        self.start = max(self.start - count, 0)


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


_OPS: dict[str, Callable[[float, float], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


class _KeyedState:
    """Keys, the partition each came from, and which changed since the last snapshot."""

    def __init__(self, lateness_ms: int) -> None:
        self.lateness_ms = lateness_ms
        self.dirty: set[Key] = set()
        self.partitions: dict[Key, int] = {}
        """The Kafka partition each key's events come from (its state is persisted there)."""
        self.keys: dict[Key, Any] = {}
        self.late = 0
        """Events older than a key's window plus the lateness: counted, not evaluated."""

    def _touch(self, key: Key, partition: int) -> None:
        self.dirty.add(key)
        self.partitions[key] = partition

    def take_changes(self) -> list[tuple[int, Key, bytes | None]]:
        """(partition, key, encoded state or None when gone) of the keys changed."""
        out = []
        for key in self.dirty:
            state = self.encode(key)
            partition = self.partitions.get(key, 0)
            if self.is_empty(key):
                self.keys.pop(key, None)
                self.partitions.pop(key, None)
            out.append((partition, key, state))
        self.dirty.clear()
        return out

    def forget_partition(self, partition: int) -> None:
        """The partition went to another worker, which reloads its state from the table."""
        for key in [k for k, p in self.partitions.items() if p == partition]:
            self.keys.pop(key, None)
            self.partitions.pop(key, None)
            self.dirty.discard(key)

    def restore(self, partition: int, key: Key, data: bytes) -> None:
        self.decode(key, data)
        self.partitions[key] = partition

    def encode(self, key: Key) -> bytes | None:  # pragma: no cover - overridden
        """The key's state to persist, or None when there is nothing worth keeping."""
        raise NotImplementedError

    def is_empty(self, key: Key) -> bool:  # pragma: no cover - overridden
        """Nothing held for the key (it can be dropped from memory)."""
        raise NotImplementedError

    def decode(self, key: Key, data: bytes) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class ThresholdWindows(_KeyedState):
    """Per key, the matching events of the last window; fires when the aggregate of a
    window meets the threshold.

    Cost per event is bounded whatever a sandbox sends: an event in event-time order is
    checked against the window that ends at it, from a running aggregate (O(1)); a late
    one against the earliest and the latest window that hold it, each aggregated in C
    over at most ``max_events`` entries. A key holds at most ``max_events`` entries (the
    oldest leave first, counted in ``evicted``).
    """

    def __init__(
        self, spec: Threshold, lateness_ms: int, max_events: int = DEFAULT_MAX_EVENTS
    ) -> None:
        super().__init__(lateness_ms)
        self.spec = spec
        self.compare = _OPS[spec.op]
        self.max_events = max_events
        self.evicted = 0
        """Entries dropped because a key held max_events (for the metrics)."""

    def add(self, key: Key, ts: int, value: Any, event_id: str, partition: int) -> Fired | None:
        entries: _Tail | None = self.keys.get(key)
        if entries is None:
            entries = self.keys[key] = _Tail()
        window = self.spec.window_ms
        if entries.ts and ts < entries.ts[-1] - window - self.lateness_ms:
            self.late += 1
            return None
        self._touch(key, partition)
        at = entries.insert(ts, self.clean(value), event_id)
        in_order = at == len(entries.ts) - 1
        if entries.valid and not in_order:
            if at < entries.start:
                entries.start += 1  # before the tail: the tail's indexes move up
            else:
                entries.join(entries.values[at])
        horizon = bisect.bisect_left(entries.ts, entries.ts[-1] - window - self.lateness_ms)
        over = len(entries.ts) - self.max_events
        if over > 0:
            self.evicted += over
        cut = max(horizon, over)
        if cut:
            if entries.valid:
                entries.trim(cut)
            else:
                entries.drop(0, cut)
            at -= cut
            if at < 0:
                return None  # the new event itself was the oldest, evicted at once
        if in_order:
            return self._tail(entries)
        return self._late(entries, at)

    def _tail(self, entries: _Tail) -> Fired | None:
        """The window that ends at the newest event, from the running aggregate."""
        ts, values = entries.ts, entries.values
        start = bisect.bisect_left(ts, ts[-1] - self.spec.window_ms)
        if not entries.valid:
            entries.rebuild(start)
        else:
            entries.join(values[-1])
            for value in values[entries.start : start]:
                entries.leave(value)
            entries.start = start
        aggregate = self.spec.aggregate
        if aggregate == "count":
            result = float(len(ts) - start)
        elif aggregate == "sum":
            result = entries.total
        else:
            result = float(len(entries.counts))
        if not self.compare(result, self.spec.value):
            return None
        fired = Fired(ts[start], ts[-1], len(ts) - start, result, entries.ids[start:])
        entries.drop(start, len(ts))
        entries.rebuild(len(entries.ts))
        return fired

    def _late(self, entries: _Tail, at: int) -> Fired | None:
        """A late event: the earliest window that holds it, then the one it starts."""
        ts, window = entries.ts, self.spec.window_ms
        first = bisect.bisect_left(ts, ts[at] - window)
        for start in (first, at):
            end = bisect.bisect_right(ts, ts[start] + window)
            value = self._aggregate(entries.values[start:end])
            if self.compare(value, self.spec.value):
                fired = Fired(ts[start], ts[end - 1], end - start, value, entries.ids[start:end])
                entries.drop(start, end)
                entries.valid = False  # aggregated again by the next in-order event
                return fired
        return None

    def _aggregate(self, values: list[Any]) -> float:
        """In C: the values are stored clean."""
        if self.spec.aggregate == "count":
            return float(len(values))
        if self.spec.aggregate == "sum":
            return float(sum(values))
        return float(len(set(values)))

    def clean(self, value: Any) -> Any:
        """The value as stored: for a sum a finite float (anything else adds nothing),
        for a distinct count a hashable value, for a count nothing."""
        aggregate = self.spec.aggregate
        if aggregate == "sum":
            if isinstance(value, int | float) and math.isfinite(value):
                return float(value)
            return 0.0
        if aggregate == "distinct":
            return _hashable(value)
        return None

    def expire(self, watermarks: Watermarks) -> None:
        """Forget keys whose newest event left the window (in their tenant's event time)."""
        keep = self.spec.window_ms + self.lateness_ms
        for key in [
            k for k, e in self.keys.items() if not e.ts or e.ts[-1] < watermarks.of(k[0]) - keep
        ]:
            self.keys[key] = _Tail()
            self.dirty.add(key)

    def encode(self, key: Key) -> bytes | None:
        entries = self.keys.get(key)
        if entries is None or not entries.ts:
            return None
        return orjson.dumps([entries.ts, entries.values, entries.ids])

    def is_empty(self, key: Key) -> bool:
        entries = self.keys.get(key)
        return entries is None or not entries.ts

    def decode(self, key: Key, data: bytes) -> None:
        ts, values, ids = orjson.loads(data)
        self.keys[key] = _Tail(ts, [self.clean(v) for v in values], ids)


class SequenceWindows(_KeyedState):
    """Per key, the events of each step within the sequence's time limit (at most
    ``max_events`` per step, the oldest leaving first); fires for a complete chain."""

    def __init__(
        self, spec: Sequence, lateness_ms: int, max_events: int = DEFAULT_MAX_EVENTS
    ) -> None:
        super().__init__(lateness_ms)
        self.spec = spec
        self.steps = len(spec.steps)
        self.max_events = max_events
        self.evicted = 0

    def add(self, step: int, key: Key, ts: int, event_id: str, partition: int) -> Fired | None:
        per_step = self.keys.get(key)
        if per_step is None:
            per_step = self.keys[key] = [_Entries() for _ in range(self.steps)]
        newest = max((e.ts[-1] for e in per_step if e.ts), default=ts)
        horizon = max(newest, ts) - self.spec.within_ms - self.lateness_ms
        if ts < horizon:
            self.late += 1
            return None
        self._touch(key, partition)
        per_step[step].insert(ts, None, event_id)
        over = len(per_step[step].ts) - self.max_events
        if over > 0:
            per_step[step].drop(0, over)
            self.evicted += over
        for entries in per_step:
            cut = bisect.bisect_left(entries.ts, horizon)
            if cut:
                entries.drop(0, cut)
        return self._chain(per_step)

    def _chain(self, per_step: list[_Entries]) -> Fired | None:
        if not all(entries.ts for entries in per_step):
            return None  # a step with no event: no chain (a flood of one step costs O(1))
        return self._ordered(per_step) if self.spec.ordered else self._unordered(per_step)

    def _unordered(self, per_step: list[_Entries]) -> Fired | None:
        """Every step inside one window [t, t + within], in any order."""
        starts = sorted(ts for entries in per_step for ts in entries.ts)
        for start in starts:
            picks = []
            for entries in per_step:
                at = bisect.bisect_left(entries.ts, start)
                if at == len(entries.ts) or entries.ts[at] > start + self.spec.within_ms:
                    break
                picks.append(at)
            else:
                times = [per_step[i].ts[p] for i, p in enumerate(picks)]
                evidence = [per_step[i].ids[p] for i, p in enumerate(picks)]
                for i, p in enumerate(picks):
                    per_step[i].drop(p, p + 1)
                return Fired(min(times), max(times), len(picks), float(len(picks)), evidence)
        return None

    def _ordered(self, per_step: list[_Entries]) -> Fired | None:
        """The earliest complete chain (each step at or after the one before) that fits."""
        first = per_step[0]
        for start in range(len(first.ts)):
            picks = [start]
            previous = first.ts[start]
            for entries in per_step[1:]:
                at = bisect.bisect_left(entries.ts, previous)
                if at == len(entries.ts):
                    # Later starts pick later steps: none of them completes either.
                    return None
                picks.append(at)
                previous = entries.ts[at]
            else:
                if previous - first.ts[start] <= self.spec.within_ms:
                    evidence = [per_step[i].ids[p] for i, p in enumerate(picks)]
                    first_ts = first.ts[start]
                    for i, p in enumerate(picks):
                        per_step[i].drop(p, p + 1)
                    return Fired(first_ts, previous, len(picks), float(len(picks)), evidence)
        return None

    def expire(self, watermarks: Watermarks) -> None:
        keep = self.spec.within_ms + self.lateness_ms
        for key, per_step in list(self.keys.items()):
            horizon = watermarks.of(key[0]) - keep
            if all(not e.ts or e.ts[-1] < horizon for e in per_step):
                self.keys[key] = [_Entries() for _ in range(self.steps)]
                self.dirty.add(key)

    def encode(self, key: Key) -> bytes | None:
        per_step = self.keys.get(key)
        if per_step is None or not any(e.ts for e in per_step):
            return None
        if self.spec.ordered and not per_step[0].ts:
            # Later steps with no first step are kept in memory (a first step may still
            # arrive late) but not persisted: every exec of every path would otherwise
            # be written to the state table. A restart forgets them.
            return None
        return orjson.dumps([[e.ts, e.ids] for e in per_step])

    def is_empty(self, key: Key) -> bool:
        per_step = self.keys.get(key)
        return per_step is None or not any(e.ts for e in per_step)

    def decode(self, key: Key, data: bytes) -> None:
        steps = orjson.loads(data)
        self.keys[key] = [_Entries(ts, [None] * len(ts), ids) for ts, ids in steps]
