"""The worker's agent: takes batches of messages off ``audit.events``, runs each through
the batch processor in the batch thread, and lets Faust acknowledge a batch only once
its rows are stored or dead-lettered.

Partition bookkeeping lives here: which partitions' stored offsets are loaded (on gaining
a partition, before its first batch), what each partition's position is, which messages
the fetcher skipped (``watchdog.GapGuard``), and what is forgotten when a partition is
revoked.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faust

from pipeline.config import Settings
from pipeline.outputs.clickhouse import SinkStopped
from pipeline.outputs.kafka import TopicsOutput
from pipeline.schema.codec import AvroCodec
from pipeline.stages.decode import RawMessage
from pipeline.worker.batch import BatchProcessor
from pipeline.worker.inventory import InventoryFollower
from pipeline.worker.state import DedupPersistence, RuleStatePersistence
from pipeline.worker.watchdog import GapGuard, StallWatchdog, rewind

log = logging.getLogger("auditpipe.worker")

INVENTORY_WAIT_S = 30.0
SHUTDOWN_GRACE_S = 30.0
"""How long a stopping worker waits for the batch in progress to be stored."""


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
        self.gaps = GapGuard()
        self.known_partitions: set[int] = set()
        """Partitions of the events topic whose stored offsets were loaded since gained."""
        self.topic = settings.kafka.topic_events

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
            batch = await self._without_skips(taken)
            if not batch:
                continue
            await self._process(batch, caught_up=len(taken) < settings.take_messages)
            self.watchdog.batch_done()
            progress.maybe_log()

    async def _process(self, batch: list[Any], caught_up: bool) -> None:
        """One batch in the batch thread. Leaving with an error stops the worker without
        committing the batch's offsets (they are consumed again after a restart)."""
        loop = asyncio.get_running_loop()
        messages = [
            RawMessage(e.message.partition, e.message.offset, e.key, e.value) for e in batch
        ]
        completed = False
        try:
            event_of_partition = await self._prepare(batch)
            work = loop.run_in_executor(self.executor, self.processor.process, messages)
            try:
                await asyncio.shield(work)
            except asyncio.CancelledError:
                # Stopping (or losing partitions): finish the batch in progress, whose
                # rows may be stored already, so that it is acknowledged and committed
                # instead of replayed by the worker that takes the partitions over.
                await asyncio.wait_for(work, SHUTDOWN_GRACE_S)
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
        assigned = {tp.partition for tp in self.app.consumer.assignment() if tp.topic == self.topic}
        event_of_partition = {e.message.partition: e for e in batch}
        self.known_partitions.intersection_update(assigned)
        gained = set(event_of_partition) - self.known_partitions
        if gained:
            for partition in gained:
                # Set by a batch of an earlier assignment that was still running when
                # the partition was revoked.
                self.processor.next_offsets.pop(partition, None)
            ends = _partition_ends(self.app, batch)
            await asyncio.get_running_loop().run_in_executor(
                self.executor, self.processor.load_stored_offsets, gained, ends
            )
            self.known_partitions.update(gained)
        self.dedup_state.prepare(set(event_of_partition), assigned)
        if self.rule_state is not None:
            self.rule_state.prepare(set(event_of_partition), assigned, event_of_partition)
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


async def _wait_for_inventory(inventory: InventoryFollower) -> None:
    try:
        await asyncio.wait_for(inventory.ready.wait(), INVENTORY_WAIT_S)
    except TimeoutError:
        log.warning(
            "the sandbox inventory is not read yet after %.0f s; going on (events "
            "of sandboxes not read yet count as unknown)",
            INVENTORY_WAIT_S,
        )
