"""Window state of threshold and sequence rules, per key, in event time: what both share.

Both keep, per key, the matching events of the last window (plus the allowed lateness)
sorted by event time, so an event that arrives late but within the lateness still lands
in the right windows. A window that fires gives up its events: the next alert of the
same key needs new events. Windows are inclusive: "5 in 60 s" fires for five events
exactly 60 s apart, not for 60.001 s. The windows themselves: ``thresholds.py`` and
``sequences.py``.
"""

from __future__ import annotations

import bisect
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
