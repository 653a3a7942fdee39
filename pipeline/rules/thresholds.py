"""Threshold rules' windows: a count, sum or distinct count of a key's matching events
within the window, compared with the rule's value.

>>> from pipeline.rules.model import Threshold
>>> windows = ThresholdWindows(Threshold("count", None, "gte", 3, 60_000, ()), lateness_ms=0)
>>> [windows.add(("sb",), ts, 1.0, f"e{ts}", 0) for ts in (0, 30_000)]
[None, None]
>>> windows.add(("sb",), 60_000, 1.0, "e60000", 0)
Fired(first_ts=0, last_ts=60000, count=3, value=3.0, evidence=['e0', 'e30000', 'e60000'])
"""

from __future__ import annotations

import bisect
import math
from typing import Any

import orjson

from pipeline.rules.model import Threshold
from pipeline.rules.windows import (
    _OPS,
    DEFAULT_MAX_EVENTS,
    Fired,
    Key,
    Watermarks,
    _hashable,
    _KeyedState,
    _Tail,
)


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
