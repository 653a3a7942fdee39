"""The stall watchdog's decisions, against a stand-in for Faust's consumer (the real one
stalls only in rare races; tests/integration/test_rebalance.py runs the real thing)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import pytest

from pipeline.worker import watchdog as watchdog_module
from pipeline.worker.watchdog import StallWatchdog, consumer_lag

TOPIC = "audit.events"


class TP(NamedTuple):
    topic: str
    partition: int


@dataclass
class StandInConsumer:
    fetched: dict[TP, int | None]
    """The high-water marks of the last fetch answers."""
    _committed_offset: dict[TP, int | None]
    broker_ends: dict[TP, int] = field(default_factory=dict)
    """What the broker says when asked (else the same as fetched)."""
    broker_down: bool = False
    _read_offset: dict[TP, int | None] = field(default_factory=dict)
    _active_partitions: set[TP] = field(default_factory=set)
    _paused_partitions: set[TP] = field(default_factory=set)
    _buffered_partitions: set[TP] = field(default_factory=set)
    seeks: list[dict[TP, int]] = field(default_factory=list)

    def assignment(self) -> set[TP]:
        return set(self.fetched)

    def highwater(self, tp: TP) -> int | None:
        return self.fetched[tp]

    def resume_partitions(self, tps: list[TP]) -> None:
        self._paused_partitions.difference_update(tps)
        self._active_partitions.update(tps)

    def on_buffer_drop(self, tp: TP) -> None:
        self._buffered_partitions.discard(tp)

    async def seek_wait(self, seeks: dict[TP, int]) -> None:
        self.seeks.append(seeks)

    async def highwaters(self, *tps: TP) -> dict[TP, int | None]:
        """The broker's answer (the watchdog asks it; it does not trust the last fetch)."""
        if self.broker_down:
            raise ConnectionError("no broker")
        return {tp: self.broker_ends.get(tp, self.fetched[tp]) for tp in tps}


@dataclass
class FlowControl:
    active: bool = True

    def is_active(self) -> bool:
        return self.active


@dataclass
class StandInApp:
    consumer: StandInConsumer
    rebalancing: bool = False
    flow_control: FlowControl = field(default_factory=FlowControl)


def app_with(highwaters: dict[int, int | None], committed: dict[int, int | None]) -> Any:
    changelog = TP("app-dedup-window-changelog", 0)
    consumer = StandInConsumer(
        {TP(TOPIC, p): h for p, h in highwaters.items()} | {changelog: 999},
        {TP(TOPIC, p): c for p, c in committed.items()} | {changelog: 0},
    )
    return StandInApp(consumer)


def quiet_for(dog: StallWatchdog, seconds: float) -> None:
    dog.last_batch_at = time.monotonic() - seconds


@pytest.fixture
def exits(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    monkeypatch.setattr(watchdog_module, "exit_stalled", lambda why, loop=None: calls.append(why))
    return calls


def test_quiet_half_the_timeout_with_messages_waiting_rewinds_to_the_first_unprocessed(
    exits: list[str],
) -> None:
    app = app_with({0: 50, 1: 30, 2: 12}, {0: 10, 1: 30, 2: 12})
    dog = StallWatchdog(app, TOPIC, stall_s=20)
    quiet_for(dog, 11)
    # Partition 0 was processed up to offset 40 (not committed yet); 1 and 2 are done.
    asyncio.run(dog.check({0: 40}))
    assert app.consumer.seeks == [{TP(TOPIC, 0): 40}]
    assert exits == []
    asyncio.run(dog.check({0: 40}))
    assert len(app.consumer.seeks) == 1  # once per quiet spell


def test_still_quiet_after_the_full_timeout_exits_for_a_restart(exits: list[str]) -> None:
    app = app_with({0: 50}, {0: 10})
    dog = StallWatchdog(app, TOPIC, stall_s=20)
    quiet_for(dog, 21)
    asyncio.run(dog.check({}))
    assert app.consumer.seeks == [{TP(TOPIC, 0): 10}]  # the committed offset
    assert len(exits) == 1 and "messages wait" in exits[0]


def test_nothing_waiting_is_not_a_stall(exits: list[str]) -> None:
    app = app_with({0: 50, 1: 7}, {0: 10, 1: 7})
    dog = StallWatchdog(app, TOPIC, stall_s=20)
    quiet_for(dog, 100)
    asyncio.run(dog.check({0: 50}))
    assert app.consumer.seeks == [] and exits == []
    assert time.monotonic() - dog.last_batch_at < 1  # the idle time is excused


def test_a_rebalance_is_a_stall_only_when_it_lasts_four_timeouts(exits: list[str]) -> None:
    app = app_with({0: 50}, {0: 10})
    app.rebalancing = True
    dog = StallWatchdog(app, TOPIC, stall_s=20)
    quiet_for(dog, 100)
    asyncio.run(dog.check({}))
    assert exits == [] and app.consumer.seeks == []
    assert dog.paused_since is not None
    dog.paused_since -= 81
    asyncio.run(dog.check({}))
    assert len(exits) == 1 and "paused" in exits[0]


def test_lag_counts_the_events_topic_only_and_skips_unknown_ends() -> None:
    app = app_with({0: 50, 1: None, 2: 9}, {0: 10, 1: 3, 2: None})
    assert consumer_lag(app, TOPIC, {0: 45}) == {0: 5}


def test_a_stuck_fetcher_is_seen_by_asking_the_broker_for_the_ends(exits: list[str]) -> None:
    app = app_with({0: 40}, {0: 10})  # the last fetch answer said 40: looks caught up
    app.consumer.broker_ends = {TP(TOPIC, 0): 90}  # but 50 more arrived since
    dog = StallWatchdog(app, TOPIC, stall_s=20)
    quiet_for(dog, 11)
    asyncio.run(dog.check({0: 40}))
    assert app.consumer.seeks == [{TP(TOPIC, 0): 40}]


def test_a_broker_that_does_not_answer_leaves_the_ends_unknown_and_counts(
    exits: list[str],
) -> None:
    app = app_with({0: 40}, {0: 10})
    app.consumer.broker_down = True
    dog = StallWatchdog(app, TOPIC, stall_s=20)
    quiet_for(dog, 21)
    asyncio.run(dog.check({0: 40}))
    assert app.consumer.seeks == [] and len(exits) == 1  # nothing to seek to; restart


def test_a_check_that_stops_completing_is_a_stall_seen_from_a_thread(
    exits: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watchdog_module, "DEADMAN_MIN_S", 0.4)
    app = app_with({0: 50}, {0: 50})
    dog = StallWatchdog(app, TOPIC, stall_s=0.01)

    async def checks_then_a_hang() -> None:
        dog.start_deadman()
        for _ in range(8):  # checks keep completing: no exit
            await dog.check({0: 50})
            await asyncio.sleep(0.1)
        assert exits == []
        await asyncio.sleep(1.0)  # no check completes (as if one hung)

    asyncio.run(checks_then_a_hang())
    assert len(exits) == 1 and "no stall check completed" in exits[0]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_skip_holds_the_partition_back_and_seeks_it_until_the_messages_come_again() -> None:
    clock = Clock()
    guard = watchdog_module.GapGuard(clock=clock)
    # Partition 0 continues; partition 1 jumps from 216 (expected) to 326.
    keep, seeks = guard.screen([(0, 7), (1, 326), (1, 327), (0, 8)], {0: 7, 1: 216})
    assert keep == [True, False, False, True] and seeks == {1: 216}
    # Messages fetched before the seek still arrive: held back, no second seek at once.
    clock.now += 0.1
    assert guard.screen([(1, 328)], {1: 216}) == ([False], {})
    clock.now += 2  # ... but again a second later if nothing came
    assert guard.screen([(1, 329)], {1: 216}) == ([False], {1: 216})
    # The skipped messages come again, in order: processed.
    assert guard.screen([(1, 216), (1, 217)], {1: 216}) == ([True, True], {})
    clock.now += 60  # long after: the earlier wait is over, nothing is accepted blindly
    assert guard.screen([(1, 400)], {1: 218}) == ([False], {1: 218})


def test_a_gap_still_there_after_the_confirmation_time_is_real_and_accepted() -> None:
    clock = Clock()
    guard = watchdog_module.GapGuard(confirm_after_s=10, clock=clock)
    assert guard.screen([(2, 500)], {2: 100}) == ([False], {2: 100})
    clock.now += 5
    assert guard.screen([(2, 500)], {2: 100}) == ([False], {2: 100})
    clock.now += 6  # 11 s after it was first seen: deleted by retention, say
    assert guard.screen([(2, 500), (2, 501)], {2: 100}) == ([True, True], {})


def test_unknown_expectations_and_repeats_pass() -> None:
    guard = watchdog_module.GapGuard(clock=Clock())
    assert guard.screen([(0, 50), (1, 3), (1, 4)], {0: None, 1: 10}) == ([True] * 3, {})
