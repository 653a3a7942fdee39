"""The worker's agents: each takes batches of messages off its topic (``audit.events``,
and ``audit.events.deferred`` for messages over a rate limit), runs each through its
batch processor in the one batch thread, and lets Faust acknowledge a batch only once
its rows are stored or dead-lettered.

The events topic goes first (``Priority``): the deferred agent takes its turn when the
events agent has caught up, or once per ``fairness.deferred_every_s`` while it has not,
and then processes one slice of about a MiB of messages before it asks again, so a
deferred flood costs the other tenants at most a slice's time per interval.

Partition bookkeeping lives here: which partitions' stored offsets are loaded (on gaining
a partition, before its first batch), what each partition's position is, which messages
the fetcher skipped (``watchdog.GapGuard``), and what is forgotten when a partition is
revoked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faust

from pipeline.config import Settings
from pipeline.outputs.clickhouse import SinkStopped
from pipeline.outputs.kafka import TopicsOutput
from pipeline.schema.codec import AvroCodec
from pipeline.stages.decode import RawMessage
from pipeline.worker.batch import BatchProcessor
from pipeline.worker.fence import Fence
from pipeline.worker.inventory import InventoryFollower
from pipeline.worker.state import DedupPersistence, RuleStatePersistence
from pipeline.worker.watchdog import END_OFFSETS_TIMEOUT_S, GapGuard, StallWatchdog, rewind

log = logging.getLogger("auditpipe.worker")

INVENTORY_WAIT_S = 30.0
DEFERRED_SLICE_BYTES = 1 << 20
"""Messages the deferred agent processes per turn (about 0.2 s of work, measured)."""


class Priority:
    """The events topic before the deferred one: the deferred agent's turn comes when
    the events agent's last take was not full (it has caught up), or ``every_s`` after
    the deferred agent's last turn.

    ``one_batch`` lets one agent at a time through a batch, from its preparation to the
    persisting of its state: the two agents share the dedup window and the rule windows.
    Without it the other agent's batch starts in the batch thread as soon as this one's
    is done, and this one's persist (on the event loop) writes the keys that batch has
    added so far to the changelog before that batch's rows are stored; killed then, a
    replacement replays that batch and drops its events as duplicates, a loss.
    """

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self.one_batch = asyncio.Lock()
        self.caught_up = asyncio.Event()
        self.caught_up.set()
        self.last_turn = time.monotonic()

    def events_taken(self, full: bool) -> None:
        if full:
            self.caught_up.clear()
        else:
            self.caught_up.set()

    async def deferred_turn(self) -> None:
        wait = self.every_s - (time.monotonic() - self.last_turn)
        if wait > 0 and not self.caught_up.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.caught_up.wait(), wait)
        self.last_turn = time.monotonic()


class EventsAgent:
    """The agent over ``audit.events`` and the state it keeps between batches."""

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        processor: BatchProcessor,
        *,
        codec: AvroCodec,
        inventory: InventoryFollower,
        dedup_state: DedupPersistence,
        rule_state: RuleStatePersistence | None,
        stopping: threading.Event,
        executor: ThreadPoolExecutor,
        watchdog: StallWatchdog,
        priority: Priority,
        fence: Fence | None = None,
        deferred: bool = False,
    ) -> None:
        self.app = app
        self.settings = settings
        self.processor = processor
        self.codec = codec
        self.inventory = inventory
        self.dedup_state = dedup_state
        self.rule_state = rule_state
        self.stopping = stopping
        self.executor = executor
        self.watchdog = watchdog
        self.priority = priority
        self.fence = fence
        self.deferred = deferred
        self.gaps = GapGuard()
        self.known_partitions: set[int] = set()
        """Partitions of the topic whose stored offsets were loaded since gained."""
        self.topic = processor.topic

    def deferred_agent(self) -> EventsAgent:
        """The agent of the deferred topic: the same state, thread and priority; the
        deferred path of this agent's processor."""
        return EventsAgent(
            self.app,
            self.settings,
            self.processor.deferred_path(),
            codec=self.codec,
            inventory=self.inventory,
            dedup_state=self.dedup_state,
            rule_state=self.rule_state,
            stopping=self.stopping,
            executor=self.executor,
            watchdog=self.watchdog,
            priority=self.priority,
            fence=self.fence,
            deferred=True,
        )

    def connect_outputs(self, loop: asyncio.AbstractEventLoop) -> None:
        """The topics join the processor's outputs, after ClickHouse (once: Faust may
        restart the agent)."""
        if "kafka" in self.processor.outputs.names:
            return
        self.processor.outputs.add(
            TopicsOutput(
                loop,
                lambda name: self.app.topic(name, value_type=bytes, key_type=bytes),
                self.settings,
                self.codec,
            )
        )

    async def run(self, stream: Any, progress: Any) -> None:
        """The agent's body: every taken batch, in order."""
        settings = self.settings.worker
        async for taken in stream.take_events(settings.take_messages, settings.take_within_s):
            full = len(taken) >= settings.take_messages
            if not self.deferred:
                self.priority.events_taken(full)
            batch = await self._without_skips(taken)
            if not batch:
                continue
            for start, end in self._slices(batch):
                try:
                    if self.deferred:
                        await self.priority.deferred_turn()
                    await self._process(batch[start:end], caught_up=end == len(batch) and not full)
                except BaseException:
                    # take_events acks the whole take on the way out: what was not
                    # processed stays out of the commits (a replay skips what is stored).
                    self._keep_out_of_commits(batch[start:])
                    raise
            if not self.deferred:
                self.watchdog.batch_done()
            progress.maybe_log()

    def _slices(self, batch: Sequence[Any]) -> Iterator[tuple[int, int]]:
        """(start, end) of the batch whole (events topic), or of its slices of about
        DEFERRED_SLICE_BYTES (deferred topic: the events topic may go between them)."""
        if not self.deferred:
            yield 0, len(batch)
            return
        start = size = 0
        for n, event in enumerate(batch):
            size += len(event.value or b"")
            if size >= DEFERRED_SLICE_BYTES and n + 1 < len(batch):
                yield start, n + 1
                start, size = n + 1, 0
        yield start, len(batch)

    async def _process(self, batch: list[Any], caught_up: bool) -> None:
        """One batch in the batch thread, the other agent's batches kept out until its
        state is persisted (``Priority``). Leaving with an error stops the worker without
        committing the batch's offsets (they are consumed again after a restart)."""
        loop = asyncio.get_running_loop()
        messages = [_raw(e) for e in batch]
        completed = False
        try:
            async with self.priority.one_batch:
                event_of_partition = await self._prepare(batch)
                if self.fence is not None:
                    self.fence.begin()
                work = loop.run_in_executor(self.executor, self.processor.process, messages)
                try:
                    await asyncio.shield(work)
                except asyncio.CancelledError:
                    # Stopping (or losing partitions): finish the batch in progress,
                    # whose rows may be stored already, so that it is acknowledged and
                    # committed instead of replayed by the worker that takes the
                    # partitions over.
                    await asyncio.wait_for(work, self.settings.worker.shutdown_grace_s)
                    await self._after_batch(event_of_partition, caught_up=True)
                    completed = True
                    raise
                await self._after_batch(event_of_partition, caught_up)
        except asyncio.CancelledError:
            if completed:
                raise  # the batch is stored: let take_events acknowledge it
            self._keep_out_of_commits(batch)
            raise
        except BaseException as exc:
            # take_events acks the batch even when we leave with an error; marking the
            # messages acked first keeps their offsets out of every commit, so they are
            # consumed again after a restart instead of lost.
            self._keep_out_of_commits(batch)
            if not isinstance(exc, SinkStopped):
                log.exception(
                    "batch failed; stopping the worker so that it restarts "
                    "from the last committed offsets"
                )
                await self.app.crash(exc)
            raise

    def _keep_out_of_commits(self, batch: list[Any]) -> None:
        for event in batch:
            event.message.acked = True
        self.stopping.set()

    async def _prepare(self, batch: list[Any]) -> dict[int, Any]:
        """Before a batch: the inventory read, the stored offsets of partitions just
        gained loaded, the Faust tables' state of its partitions in place."""
        if not self.inventory.ready.is_set():
            await _wait_for_inventory(self.inventory)
        assignment = self.app.consumer.assignment()
        assigned = {tp.partition for tp in assignment if tp.topic == self.topic}
        event_of_partition = {e.message.partition: e for e in batch}
        self.known_partitions.intersection_update(assigned)
        gained = set(event_of_partition) - self.known_partitions
        if gained:
            for partition in gained:
                # Set by a batch of an earlier assignment that was still running when
                # the partition was revoked.
                self.processor.next_offsets.pop(partition, None)
            ends = await _broker_ends(self.app, batch, gained)
            await asyncio.get_running_loop().run_in_executor(
                self.executor, self.processor.load_stored_offsets, gained, ends
            )
            self.known_partitions.update(gained)
        # The stages' state is the events topic's partitions' (the deferred topic has the
        # same partitions, assigned together: a message keeps its partition).
        events_topic = self.settings.kafka.topic_events
        held = {tp.partition for tp in assignment if tp.topic == events_topic}
        self.dedup_state.prepare(set(event_of_partition), held)
        if self.rule_state is not None:
            self.rule_state.prepare(set(event_of_partition), held, event_of_partition)
        return event_of_partition

    async def _after_batch(self, event_of_partition: dict[int, Any], caught_up: bool) -> None:
        # The batch's alerts and dead letters went out while it was processed (before its
        # rows were stored); now the state that would make a replay skip it is written.
        self.dedup_state.persist(event_of_partition)
        if self.rule_state is not None:
            # Under load, rule windows are written once per interval; a worker that has
            # caught up (or is stopping) writes them at once, so an idle worker holds
            # nothing unwritten.
            self.rule_state.persist(event_of_partition, now=caught_up)

    async def _without_skips(self, taken: list[Any]) -> list[Any]:
        """The taken events minus those past offsets the fetcher skipped (GapGuard):
        those are marked acknowledged, which keeps them out of every commit, and their
        partitions are sought back, so they come again in order."""
        consumer: Any = self.app.consumer
        expected: dict[int, int | None] = {}
        for e in taken:
            partition = e.message.partition
            if partition not in expected:
                committed = consumer._committed_offset.get(e.message.tp)
                expected[partition] = self.processor.next_offsets.get(partition, committed)
        keep, seeks = self.gaps.screen(
            [(e.message.partition, e.message.offset) for e in taken], expected
        )
        if all(keep):
            return taken
        for e, kept in zip(taken, keep, strict=True):
            if not kept:
                e.message.acked = True
        if seeks:
            log.warning(
                "the fetcher skipped messages (partition: first offset skipped %s); "
                "seeking back there",
                seeks,
            )
            await rewind(self.app, self.topic, {p: (o, o) for p, o in seeks.items()})
        return [e for e, kept in zip(taken, keep, strict=True) if kept]

    def forget(self, revoked: set[Any]) -> None:
        """What this worker processed of a partition says nothing once another worker
        has it: regained later, its stored offsets are loaded again and its position is
        the committed offset until a batch of it is processed."""
        for tp in revoked:
            if tp.topic == self.topic:
                self.known_partitions.discard(tp.partition)
                self.processor.next_offsets.pop(tp.partition, None)
                self.gaps.forget(tp.partition)


def _raw(event: Any) -> RawMessage:
    message = event.message
    sent_ms = int((message.timestamp or 0) * 1000)
    return RawMessage(message.partition, message.offset, event.key, event.value, sent_ms)


def _partition_ends(app: faust.App, batch: list[Any]) -> dict[int, int]:
    """Each partition's end offset as the consumer last heard it from the broker (the
    high-water mark of its fetch answers, which brought this batch); where it is not
    known, one past the batch's last message (a lower bound: a stored offset beyond it
    is not trusted, and the insert tokens absorb what is processed again)."""
    consumer: Any = app.consumer
    ends: dict[int, int] = {}
    for event in batch:
        tp = event.message.tp
        if tp.partition not in ends:
            highwater = consumer.highwater(tp)
            ends[tp.partition] = highwater if highwater is not None else 0
    for event in batch:
        partition, offset = event.message.partition, event.message.offset
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    return ends


async def _broker_ends(app: faust.App, batch: list[Any], gained: set[int]) -> dict[int, int]:
    """The gained partitions' end offsets asked of the broker: after a restart the
    consumer may not know them yet, and a lower bound (``_partition_ends``) would make
    the worker distrust the signed progress its predecessor stored past the first batch,
    process those messages again in batches of other bounds, and store them twice."""
    ends = _partition_ends(app, batch)
    tps = {e.message.tp for e in batch if e.message.partition in gained}
    try:
        asked = await asyncio.wait_for(app.consumer.highwaters(*tps), END_OFFSETS_TIMEOUT_S)
    except Exception as exc:  # the lower bound stands: tokens absorb some, not all
        log.warning("could not ask the broker for partition ends (%s)", exc)
        return ends
    for tp, end in asked.items():
        if end is not None:
            ends[tp.partition] = max(ends.get(tp.partition, 0), int(end))
    return ends


async def _wait_for_inventory(inventory: InventoryFollower) -> None:
    try:
        await asyncio.wait_for(inventory.ready.wait(), INVENTORY_WAIT_S)
    except TimeoutError:
        log.warning(
            "the sandbox inventory is not read yet after %.0f s; going on (events "
            "of sandboxes not read yet count as unknown)",
            INVENTORY_WAIT_S,
        )
