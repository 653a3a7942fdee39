"""Threshold and sequence windows: boundaries, lateness, state round trips."""

from __future__ import annotations

import random
from typing import Any

import pytest

from pipeline.rules.language import Match, Sequence, Step, Threshold
from pipeline.rules.sequences import SequenceWindows
from pipeline.rules.thresholds import ThresholdWindows
from pipeline.rules.windows import Watermarks

KEY = ("acme", "sb-1")


def _count(n: int, window_ms: int, lateness_ms: int = 0) -> ThresholdWindows:
    return ThresholdWindows(Threshold("count", None, "gte", n, window_ms, ()), lateness_ms)


def test_threshold_window_is_inclusive_at_its_boundary() -> None:
    at_boundary = _count(3, 60_000)
    assert at_boundary.add(KEY, 0, None, "a", 0) is None
    assert at_boundary.add(KEY, 30_000, None, "b", 0) is None
    fired = at_boundary.add(KEY, 60_000, None, "c", 0)
    assert fired is not None and fired.evidence == ["a", "b", "c"]

    past_boundary = _count(3, 60_000)
    for ts, event_id in ((0, "a"), (30_000, "b"), (60_001, "c")):
        assert past_boundary.add(KEY, ts, None, event_id, 0) is None


def test_a_fired_window_gives_up_its_events() -> None:
    windows = _count(2, 60_000)
    assert windows.add(KEY, 0, None, "a", 0) is None
    assert windows.add(KEY, 1, None, "b", 0) is not None
    assert windows.add(KEY, 2, None, "c", 0) is None  # needs a new pair
    assert windows.add(KEY, 3, None, "d", 0) is not None


def test_keys_are_counted_apart() -> None:
    windows = _count(2, 60_000)
    assert windows.add(("acme", "sb-1"), 0, None, "a", 0) is None
    assert windows.add(("acme", "sb-2"), 1, None, "b", 0) is None


def test_late_event_within_lateness_completes_an_earlier_window() -> None:
    windows = _count(3, 60_000, lateness_ms=30_000)
    assert windows.add(KEY, 10_000, None, "a", 0) is None
    assert windows.add(KEY, 100_000, None, "z", 0) is None  # a window later
    # Arrives after z but happened at 40 s: one short of [10 s, 70 s].
    assert windows.add(KEY, 40_000, None, "b", 0) is None
    fired = windows.add(KEY, 45_000, None, "c", 0)
    assert fired is not None and fired.evidence == ["a", "b", "c"]
    assert fired.first_ts == 10_000 and fired.last_ts == 45_000


def test_events_later_than_the_lateness_are_counted_not_used() -> None:
    windows = _count(2, 60_000, lateness_ms=10_000)
    windows.add(KEY, 200_000, None, "a", 0)
    assert windows.add(KEY, 100_000, None, "old", 0) is None
    assert windows.late == 1


def test_sum_and_distinct() -> None:
    sums = ThresholdWindows(Threshold("sum", "bytes", "gt", 100, 1000, ()), 0)
    assert sums.add(KEY, 0, 60.0, "a", 0) is None
    assert sums.add(KEY, 10, float("nan"), "b", 0) is None  # not a number: adds nothing
    fired = sums.add(KEY, 20, 41.0, "c", 0)
    assert fired is not None and fired.value == 101.0
    distinct = ThresholdWindows(Threshold("distinct", "actor.user", "gte", 2, 1000, ()), 0)
    assert distinct.add(KEY, 0, "root", "a", 0) is None
    assert distinct.add(KEY, 1, "root", "b", 0) is None
    assert distinct.add(KEY, 2, "admin", "c", 0) is not None


def _sequence(within_ms: int, lateness_ms: int = 0) -> SequenceWindows:
    step = Step(Match("category", "equals", ("x",)))
    return SequenceWindows(Sequence((step, step), within_ms, ()), lateness_ms)


def test_sequence_needs_order_and_the_time_limit() -> None:
    in_time = _sequence(5_000)
    assert in_time.add(0, KEY, 1_000, "a", 0) is None
    fired = in_time.add(1, KEY, 6_000, "b", 0)
    assert fired is not None and fired.evidence == ["a", "b"]

    too_slow = _sequence(5_000)
    assert too_slow.add(0, KEY, 1_000, "a", 0) is None
    assert too_slow.add(1, KEY, 6_001, "b", 0) is None

    wrong_order = _sequence(5_000)
    assert wrong_order.add(1, KEY, 1_000, "b", 0) is None
    assert wrong_order.add(0, KEY, 2_000, "a", 0) is None


def test_sequence_step_arriving_out_of_order_within_lateness() -> None:
    windows = _sequence(5_000, lateness_ms=10_000)
    assert windows.add(1, KEY, 3_000, "b", 0) is None  # B delivered first ...
    fired = windows.add(0, KEY, 1_000, "a", 0)  # ... but A happened before it
    assert fired is not None and fired.evidence == ["a", "b"]


def test_state_round_trip_resumes_a_window() -> None:
    before = _count(3, 60_000)
    before.add(KEY, 0, None, "a", 0)
    before.add(KEY, 1, None, "b", 5)
    ((partition, key, data),) = before.take_changes()
    assert (partition, key) == (5, KEY) and data is not None
    after = _count(3, 60_000)
    after.restore(partition, key, data)
    fired = after.add(KEY, 2, None, "c", 5)
    assert fired is not None and fired.evidence == ["a", "b", "c"]

    seq = _sequence(5_000)
    seq.add(0, KEY, 0, "a", 1)
    ((partition, key, data),) = seq.take_changes()
    assert data is not None
    resumed = _sequence(5_000)
    resumed.restore(partition, key, data)
    assert resumed.add(1, KEY, 10, "b", 1) is not None


def test_expired_keys_become_tombstones_and_lost_partitions_are_forgotten() -> None:
    windows = _count(3, 1_000)
    windows.add(KEY, 0, None, "a", 2)
    windows.take_changes()
    windows.expire(Watermarks(everywhere=10_000))
    assert windows.take_changes() == [(2, KEY, None)]
    windows.add(KEY, 20_000, None, "b", 2)
    windows.forget_partition(2)
    assert not windows.keys and not windows.dirty


def test_a_later_step_alone_is_held_but_not_persisted() -> None:
    windows = _sequence(5_000, lateness_ms=10_000)
    assert windows.add(1, KEY, 3_000, "b", 0) is None
    assert windows.take_changes() == [(0, KEY, None)]  # nothing written to the table
    fired = windows.add(0, KEY, 1_000, "a", 0)  # still completes the chain in memory
    assert fired is not None and fired.evidence == ["a", "b"]


def test_a_started_chain_is_persisted() -> None:
    windows = _sequence(5_000)
    windows.add(0, KEY, 1_000, "a", 0)
    ((partition, key, state),) = windows.take_changes()
    assert (partition, key) == (0, KEY) and state is not None


def _reference(spec: Threshold, events: list[tuple[int, Any]]) -> list[int]:
    """Brute force: after each in-order event, aggregate every entry within the window
    that ends at it; fire (and give up those entries) when the threshold holds."""
    held: list[tuple[int, Any, int]] = []
    fired = []
    for index, (ts, value) in enumerate(events):
        held.append((ts, value, index))
        window = [h for h in held if h[0] >= ts - spec.window_ms]
        values = [h[1] for h in window]
        if spec.aggregate == "count":
            result = float(len(values))
        elif spec.aggregate == "sum":
            result = float(sum(v for v in values if v == v))
        else:
            result = float(len(set(values)))
        if _OPS_REF[spec.op](result, spec.value):
            fired.append(index)
            held = [h for h in held if h not in window]
    return fired


_OPS_REF = {"gte": float.__ge__, "gt": float.__gt__}


@pytest.mark.parametrize("aggregate", ["count", "sum", "distinct"])
def test_running_aggregates_fire_where_a_full_recount_does(aggregate: str) -> None:
    rng = random.Random(7)
    for trial in range(40):
        field = None if aggregate == "count" else "x"
        spec = Threshold(aggregate, field, rng.choice(["gte", "gt"]), rng.randint(2, 12),
                         rng.choice([50, 200, 1000]), ())  # fmt: skip
        ts, events = 0, []
        for _ in range(300):
            ts += rng.choice([0, 1, 5, 20, 90])
            value = float(rng.randint(0, 9)) if aggregate != "distinct" else rng.choice("abcdefg")
            events.append((ts, value))
        windows = ThresholdWindows(spec, lateness_ms=0)
        fired = [
            i for i, (t, v) in enumerate(events) if windows.add(KEY, t, v, f"e{i}", 0) is not None
        ]
        assert fired == _reference(spec, events), (trial, spec)


def test_a_key_holds_at_most_max_events_and_counts_what_left() -> None:
    windows = ThresholdWindows(Threshold("distinct", "x", "gte", 50, 60_000, ()), 0, max_events=100)
    for n in range(1_000):  # one value repeated: never fires, would grow without a cap
        assert windows.add(KEY, n, "same", f"e{n}", 0) is None
    assert len(windows.keys[KEY].ts) == 100
    assert windows.evicted == 900
    fired = [windows.add(KEY, 1_000 + n, f"v{n}", f"d{n}", 0) for n in range(49)]
    assert fired[-1] is not None and fired[-1].value == 50.0


def test_a_flood_of_one_sequence_step_is_capped_and_cheap() -> None:
    windows = SequenceWindows(_sequence(60_000).spec, 0, max_events=64)
    for n in range(5_000):
        assert windows.add(0, KEY, n, f"e{n}", 0) is None
    assert len(windows.keys[KEY][0].ts) == 64 and windows.evicted == 5_000 - 64
    fired = windows.add(1, KEY, 5_000, "last", 0)
    assert fired is not None and fired.evidence == ["e4936", "last"]
