"""Sequence rules' windows: per key, how far each partial match of the rule's steps has
come, within the window."""

from __future__ import annotations

import bisect

import orjson

from pipeline.rules.model import Sequence
from pipeline.rules.windows import (
    DEFAULT_MAX_EVENTS,
    Fired,
    Key,
    Watermarks,
    _Entries,
    _KeyedState,
)


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
