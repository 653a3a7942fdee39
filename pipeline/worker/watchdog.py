"""The worker's stall watchdog, and the consumer positions it and the lag metric read.

faust-streaming 0.15 can leave a partition fetched past messages its stream never
received: its fetch loop drops the records of a fetch that returns while the consumer
generation changes or while the flow is stopped, after aiokafka already moved the
partition's position past them. Nothing fetches them again until a seek or a restart, so
a worker with messages waiting would sit idle for ever. The watchdog sees that from the
outside (no batch for a while, yet messages wait), first rewinds the partitions to the
first message not processed (which is what a restart would do, without the restart), and
if that does not help either, exits with status 75 so that a supervisor restarts the
worker where the stored rows end.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import threading
import time
import types
from collections.abc import Mapping
from typing import Any

import faust

log = logging.getLogger("auditpipe.worker")

STALL_EXIT_STATUS = 75
"""EX_TEMPFAIL: the worker stalled and should be restarted."""
PAUSED_STALL_FACTOR = 4
"""A rebalance or recovery lasting this many stall timeouts counts as a stall too."""
END_OFFSETS_TIMEOUT_S = 5.0
DEADMAN_FACTOR = 4
"""No completed stall check for this many stall timeouts: the check hangs (exit)."""
DEADMAN_MIN_S = 60.0


def unprocessed_from(
    assigned: Mapping[int, int | None],
    committed: Mapping[int, int | None],
    next_offsets: Mapping[int, int],
) -> dict[int, tuple[int, int] | None]:
    """Per assigned partition (given with its high-water mark, or None when no fetch
    answered yet): the first offset not processed and the high-water mark, or None when
    either is unknown. The first offset not processed is the one after the last message
    processed since the partition was gained, else the committed offset.

    >>> unprocessed_from({0: 10, 1: 7, 2: None}, {0: 4, 1: None, 2: 3}, {0: 8})
    {0: (8, 10), 1: None, 2: None}
    """
    out: dict[int, tuple[int, int] | None] = {}
    for partition, highwater in assigned.items():
        position = next_offsets.get(partition, committed.get(partition))
        out[partition] = None if position is None or highwater is None else (position, highwater)
    return out


def consumer_positions(
    app: faust.App,
    topic: str,
    next_offsets: Mapping[int, int],
    ends: Mapping[int, int | None] | None = None,
) -> dict[int, tuple[int, int] | None]:
    """`unprocessed_from` for the partitions of topic assigned to this worker; their ends
    are ``ends`` when given, else the high-water marks of the last fetch answers."""
    consumer: Any = app.consumer
    mine = [tp for tp in consumer.assignment() if tp.topic == topic]
    return unprocessed_from(
        {
            tp.partition: ends.get(tp.partition) if ends is not None else consumer.highwater(tp)
            for tp in mine
        },
        {tp.partition: consumer._committed_offset.get(tp) for tp in mine},
        next_offsets,
    )


async def broker_ends(app: faust.App, topic: str) -> dict[int, int | None]:
    """The partitions' end offsets asked of the broker now: a consumer whose fetcher is
    stuck gets no fetch answers, so its high-water marks would stay where they were and
    the partitions would look caught up. Unknown (None) when the broker does not answer
    in time."""
    consumer: Any = app.consumer
    mine = [tp for tp in consumer.assignment() if tp.topic == topic]
    try:
        found = await asyncio.wait_for(consumer.highwaters(*mine), END_OFFSETS_TIMEOUT_S)
    except Exception:  # a timeout or a broker error: the ends are unknown
        return {tp.partition: None for tp in mine}
    return {tp.partition: found.get(tp) for tp in mine}


def consumer_lag(app: faust.App, topic: str, next_offsets: Mapping[int, int]) -> dict[int, int]:
    """Per assigned partition whose end is known: messages not processed yet."""
    lag = {}
    for partition, known in consumer_positions(app, topic, next_offsets).items():
        if known is not None:
            position, highwater = known
            lag[partition] = max(0, highwater - position)
    return lag


class GapGuard:
    """Keeps the worker from processing past messages Faust's fetcher skipped.

    The fetch-loop flaw in the module docstring has a second face: when the consumer goes
    on fetching after the dropped records, the stream jumps over them, and Faust, which
    takes a jump in offsets for a compacted topic's gap, commits past them. A test saw
    three ranges of ~110 messages skipped and committed after a rebalance. The events
    topic has no gaps of its own (no compaction, no transactions), so a message of a
    partition beyond the next offset expected (after the last one processed, else the
    committed offset) means a skip: it and the partition's later messages of the batch
    are not processed (nor committed), and the partition is sought back to the expected
    offset. A gap that is still there after ``confirm_after_s`` (retention deleted
    messages never read) is real: it is logged and accepted.

    >>> guard = GapGuard(clock=lambda: 0.0)
    >>> guard.screen([(0, 5), (0, 6), (1, 9), (1, 12), (1, 13)], {0: 5, 1: 10})
    ([True, True, True, False, False], {1: 10})
    """

    def __init__(
        self,
        *,
        confirm_after_s: float = 10.0,
        reseek_after_s: float = 1.0,
        clock: Any = time.monotonic,
    ) -> None:
        self.confirm_after_s = confirm_after_s
        self.reseek_after_s = reseek_after_s
        self.clock = clock
        self._waiting: dict[int, tuple[int, float, float]] = {}
        """Per partition sought back: (expected offset, first seen, last seek)."""

    def screen(
        self, offsets: list[tuple[int, int]], expected: Mapping[int, int | None]
    ) -> tuple[list[bool], dict[int, int]]:
        """For (partition, offset) pairs in delivery order: whether to process each, and
        the partitions to seek now, with the offset to seek to."""
        now = self.clock()
        following = {p: o for p, o in expected.items() if o is not None}
        keep: list[bool] = []
        seek: dict[int, int] = {}
        held_back: set[int] = set()
        for partition, offset in offsets:
            wanted = following.get(partition)
            if partition in held_back:
                keep.append(False)
            elif wanted is None or offset <= wanted:
                if offset == wanted:
                    self._waiting.pop(partition, None)
                following[partition] = max(offset + 1, wanted or 0)
                keep.append(True)
            elif self._confirmed(partition, wanted, offset, now):
                following[partition] = offset + 1
                keep.append(True)
            else:
                held_back.add(partition)
                keep.append(False)
                _, first_seen, last_seek = self._waiting.get(partition, (wanted, now, -1e9))
                if now - last_seek >= self.reseek_after_s:
                    seek[partition] = wanted
                    last_seek = now
                self._waiting[partition] = (wanted, first_seen, last_seek)
        return keep, seek

    def _confirmed(self, partition: int, wanted: int, offset: int, now: float) -> bool:
        waiting = self._waiting.get(partition)
        if waiting is None or waiting[0] != wanted:
            return False
        if now - waiting[1] < self.confirm_after_s:
            return False
        log.warning(
            "partition %d: offsets %d to %d are not in the topic (deleted by retention "
            "before they were read?); going on from %d",
            partition,
            wanted,
            offset - 1,
            offset,
        )
        del self._waiting[partition]
        return True

    def forget(self, partition: int) -> None:
        self._waiting.pop(partition, None)


class StallWatchdog:
    """Called every few seconds on the event loop (a Faust timer)."""

    def __init__(self, app: faust.App, topic: str, stall_s: float) -> None:
        self.app = app
        self.topic = topic
        self.stall_s = stall_s
        self.last_batch_at = time.monotonic()
        """The last batch, or the last time a pause was excused (a rebalance, a
        recovery, nothing to consume)."""
        self.kicked = False
        self.paused_since: float | None = None
        self.checked_at = time.monotonic()
        """When a check last completed (see `start_deadman`)."""

    def start_deadman(self) -> None:
        """Start a thread that exits the worker (status 75) when no check has completed
        for DEADMAN_FACTOR stall timeouts (at least a minute): the check can hang in a
        call into Faust's consumer, or its timer stop running, and then nothing inside
        the loop notices. Runs from the worker's start (the clock starts then); a worker
        whose checks never run is blind, and is restarted. A test saw a worker idle for
        3 minutes after a rebalance with messages waiting and not a word from the check."""
        if not self.stall_s:
            return
        loop = asyncio.get_running_loop()
        self.checked_at = time.monotonic()
        limit = max(DEADMAN_FACTOR * self.stall_s, DEADMAN_MIN_S)

        def watch() -> None:
            while loop.is_running():  # ends with the worker's loop
                time.sleep(min(5.0, limit / 4))
                late = time.monotonic() - self.checked_at
                if late > limit and loop.is_running():
                    exit_stalled(f"no stall check completed for {late:.0f} s", loop)
                    return

        threading.Thread(target=watch, name="stall-deadman", daemon=True).start()

    def batch_done(self) -> None:
        self.last_batch_at = time.monotonic()
        self.kicked = False

    async def check(self, next_offsets: Mapping[int, int]) -> None:
        try:
            await self._check(next_offsets)
        finally:
            self.checked_at = time.monotonic()

    async def _check(self, next_offsets: Mapping[int, int]) -> None:
        if not self.stall_s:
            return
        app = self.app
        now = time.monotonic()
        if app.rebalancing or not app.flow_control.is_active():
            # A rebalance or a recovery is not a stall, unless it never ends.
            if self.paused_since is None:
                self.paused_since = now
            paused_s = now - self.paused_since
            if paused_s >= PAUSED_STALL_FACTOR * self.stall_s:
                exit_stalled(f"paused (rebalancing {app.rebalancing}) for {paused_s:.0f} s")
            return
        if self.paused_since is not None:
            self.paused_since = None
            self.batch_done()  # the clock starts again when the pause ends
        quiet_s = now - self.last_batch_at
        if quiet_s < self.stall_s / 2:
            return  # a batch came lately: no need to ask the broker anything
        ends = await broker_ends(app, self.topic)
        positions = consumer_positions(app, self.topic, next_offsets, ends)
        behind = {
            partition: known
            for partition, known in positions.items()
            if known is None or known[0] < known[1]
        }
        if not behind:
            self.batch_done()  # nothing to consume
            return
        if quiet_s >= self.stall_s / 2 and not self.kicked:
            self.kicked = True
            log.warning(
                "no batch for %.0f s while messages wait (partition: (next offset, end) %s); "
                "consumer: %s; rewinding those partitions to their first message not "
                "processed",
                quiet_s,
                behind,
                consumer_state(app),
            )
            await rewind(app, self.topic, behind)
        if quiet_s >= self.stall_s:
            exit_stalled(f"no batch for {quiet_s:.0f} s while messages wait ({behind})")


async def rewind(app: faust.App, topic: str, behind: Mapping[int, tuple[int, int] | None]) -> None:
    """Resume the partitions and seek those with a known position back to it (which also
    resets Faust's record of what it read, so the messages are delivered again)."""
    consumer: Any = app.consumer
    mine = [tp for tp in consumer.assignment() if tp.topic == topic]
    for tp in list(consumer._buffered_partitions):
        consumer.on_buffer_drop(tp)
    consumer.resume_partitions(mine)
    seeks = {}
    for tp in mine:
        known = behind.get(tp.partition)
        if known is not None:
            seeks[tp] = known[0]
    if seeks:
        await asyncio.wait_for(consumer.seek_wait(seeks), END_OFFSETS_TIMEOUT_S)


def consumer_state(app: faust.App) -> str:
    consumer: Any = app.consumer
    read = {str(tp): offset for tp, offset in consumer._read_offset.items()}
    return (
        f"assigned {sorted(str(tp) for tp in consumer.assignment())}, "
        f"active {sorted(str(tp) for tp in consumer._active_partitions or ())}, "
        f"paused {sorted(str(tp) for tp in consumer._paused_partitions)}, "
        f"buffer-full {sorted(str(tp) for tp in consumer._buffered_partitions)}, "
        f"read offsets {read}"
    )


def exit_stalled(why: str, loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Log why and where every task waits, then exit with status 75 (from any thread;
    ``loop`` is the worker's loop when called from another thread)."""
    log.error(
        "%s: the consumer stalled; exiting (status 75) so that the worker is restarted, "
        "where the stored rows end",
        why,
    )
    with contextlib.suppress(Exception):  # the tasks change under a thread's feet
        dump_tasks(loop)
    logging.shutdown()
    os._exit(STALL_EXIT_STATUS)


def dump_tasks(loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Log where every task and async generator waits (SIGUSR1, and before a stall exit)."""
    for task in asyncio.all_tasks(loop):
        log.warning("task %s:\n%s", task.get_name(), _await_chain(task.get_coro()))
    for agen in _async_generators():
        log.warning("async generator %s", agen)


def _await_chain(coro: Any) -> str:
    """Where a coroutine waits, outermost first."""
    lines: list[str] = []
    while coro is not None and len(lines) < 40:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
        if frame is not None:
            lines.append(f"  {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
    return "\n".join(lines)


def _async_generators() -> list[str]:
    """Suspended async generators (Faust's stream iterators hide behind them): where
    each waits, and the small locals that say why."""
    out = []
    for obj in gc.get_objects():
        if isinstance(obj, types.AsyncGeneratorType) and obj.ag_frame is not None:
            frame = obj.ag_frame
            local_state = {
                k: (len(v) if isinstance(v, list) else v.is_set() if hasattr(v, "is_set") else v)
                for k, v in frame.f_locals.items()
                if k in ("buffer", "events", "buffer_full", "buffer_consumed", "buffer_consuming")
            }
            out.append(
                f"{frame.f_code.co_name} at {frame.f_code.co_filename}:{frame.f_lineno} "
                f"{local_state}\n{_await_chain(obj.ag_await)}"
            )
    return out
