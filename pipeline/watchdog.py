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
import gc
import logging
import os
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

    def batch_done(self) -> None:
        self.last_batch_at = time.monotonic()
        self.kicked = False

    async def check(self, next_offsets: Mapping[int, int]) -> None:
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
        await consumer.seek_wait(seeks)


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


def exit_stalled(why: str) -> None:
    log.error(
        "%s: the consumer stalled; exiting (status 75) so that the worker is restarted, "
        "where the stored rows end",
        why,
    )
    dump_tasks()
    logging.shutdown()
    os._exit(STALL_EXIT_STATUS)


def dump_tasks() -> None:
    """Log where every task and async generator waits (SIGUSR1, and before a stall exit)."""
    for task in asyncio.all_tasks():
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
