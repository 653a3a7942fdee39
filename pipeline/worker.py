"""The Faust worker: consume ``audit.events``, run the stages, store in ClickHouse.

The agent takes messages in batches (``worker.take_messages`` within
``worker.take_within_s``); each message already carries a batch of events, so Faust's
per-message cost is paid once per many events. A thread does the CPU and I/O work of a
batch (decode -> stages -> sink flush) while the event loop keeps the consumer alive.
Faust acknowledges the batch's messages only after that work returned: an offset is
committed only when its events are stored or dead-lettered.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import faust
import orjson

from pipeline.chclient import connect
from pipeline.checkpoints import (
    CHECKPOINT_COLUMNS,
    CheckpointSigner,
    checkpoint_columns,
    last_checkpoints,
    load_key,
)
from pipeline.collect.chain import chain_key
from pipeline.config import Settings
from pipeline.deadletter import DEADLETTER_COLUMNS, DeadLetters, Provenance, record_columns
from pipeline.inventory import InventoryFollower
from pipeline.metrics import WorkerMetrics
from pipeline.rules.alerts import ALERT_COLUMNS, Alert, alert_columns
from pipeline.runtime import tune_gc
from pipeline.schema import codec_for
from pipeline.schema.codec import AvroCodec
from pipeline.schema.event import Event
from pipeline.sink.clickhouse import ClickHouseSink, InsertService, SinkStopped
from pipeline.sink.clickhouse.progress import ProgressSigner, stored_offsets
from pipeline.sink.clickhouse.request_builder import InsertRequest
from pipeline.stages.base import BatchContext, Stage
from pipeline.stages.collapse import CollapseStage
from pipeline.stages.decode import DecodedPartition, RawMessage, decode_messages
from pipeline.stages.dedup import DedupStage
from pipeline.stages.detect import DetectStage
from pipeline.stages.enrich import EnrichStage, Inventory, StaticInventory
from pipeline.stages.policy import LINK_COLUMNS, ROLLUP_COLUMNS, PolicyFile, PolicyStage
from pipeline.stages.redact import RedactStage
from pipeline.stages.validate import ValidateStage
from pipeline.state import DedupPersistence, RuleStatePersistence
from pipeline.watchdog import (
    GapGuard,
    StallWatchdog,
    consumer_lag,
    dump_tasks,
    rewind,
)

log = logging.getLogger("auditpipe.worker")

DEADLETTER_SCHEMA = "dead_letter"
ALERT_SCHEMA = "alert"
PROGRESS_EVERY_S = 10.0
DECODE_CHUNK_MESSAGES = 64
DECODE_CHUNK_BYTES = 1 << 20
INVENTORY_WAIT_S = 30.0
SEND_TIMEOUT_S = 60.0
"""Longest wait for Kafka to take a batch's alerts or dead letters (else the batch fails)."""
SHUTDOWN_GRACE_S = 30.0
"""How long a stopping worker waits for the batch in progress to be stored."""
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4"


def default_stages(settings: Settings, inventory: Inventory | None = None) -> list[Stage]:
    """The stages between decode and the sink, in order.

    Detection runs before the level policy, which keeps every event a rule matched.
    """
    detect: list[Stage] = [DetectStage(settings.rules)] if settings.rules.enabled else []
    return [
        ValidateStage(settings.validation),
        DedupStage(settings.dedup, secret=load_key(settings)),
        EnrichStage(inventory or StaticInventory({})),
        *detect,
        PolicyStage(PolicyFile(settings.policy.file)),
        CollapseStage(settings.collapse),
        RedactStage(settings.redact),
    ]


@dataclass
class BatchResult:
    """What a processed batch leaves for the event loop to publish."""

    dead: DeadLetters
    alerts: list[Alert] = field(default_factory=list)


class BatchProcessor:
    """decode -> stages -> sink for one batch of messages. Runs in the worker's thread."""

    def __init__(
        self,
        settings: Settings,
        codec: AvroCodec,
        stages: Sequence[Stage],
        service: InsertService,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.codec = codec
        self.stages = list(stages)
        self.service = service
        self.metrics = metrics or WorkerMetrics()
        database = settings.clickhouse.database
        self.deadletter_table = f"{database}.deadletter"
        self.rollup_table = f"{database}.events_policy_rollup"
        self.links_table = f"{database}.chain_links"
        self.alerts_table = f"{database}.alerts"
        self.detect = next((s for s in self.stages if isinstance(s, DetectStage)), None)
        self.sink = ClickHouseSink(
            service,
            table=f"{database}.events",
            max_rows=settings.sink.max_rows,
            max_bytes=settings.sink.max_bytes,
            executor=ThreadPoolExecutor(max_workers=1, thread_name_prefix="auditpipe-insert"),
            on_rejected=self._reject_rows,
            signer=ProgressSigner(load_key(settings), settings.kafka.topic_events),
        )
        self._rejected_rows = 0
        """Rows ClickHouse refused for good since the last batch (dead-lettered)."""
        self._rejected_chained: list[tuple[str, str, int]] = []
        """Chained events the sink dead-lettered in this batch (see ChainMonitor)."""
        self.on_alerts: Callable[[list[Alert]], concurrent.futures.Future[None]] | None = None
        """Sends alerts (called in the batch thread as soon as a chunk raised them)."""
        self.on_dead_letters: (
            Callable[[list[dict[str, Any]]], concurrent.futures.Future[None]] | None
        ) = None
        """Publishes dead-letter records on the dead-letter topic."""
        self._checkpoint_at = time.monotonic()
        self._checkpoint_signer: CheckpointSigner | None = None
        self.on_checkpoints: (
            Callable[[list[dict[str, Any]]], concurrent.futures.Future[None]] | None
        ) = None
        """Publishes checkpoint records on the checkpoints topic (their second copy)."""
        self.stored_upto: dict[int, int] = {}
        """Per partition gained: the highest offset already stored (see progress.py)."""
        redact = next((s for s in self.stages if isinstance(s, RedactStage)), None)
        self._mask_dead_letter = redact.masked if redact is not None else None
        self.next_offsets: dict[int, int] = {}
        """Per partition, the offset after the last message processed (for the lag)."""
        self._retries_seen = 0
        self._late_seen = 0
        self._evicted_seen = 0
        self._reload_failures_seen = 0

    def process(self, messages: Sequence[RawMessage]) -> BatchResult:
        ctx = BatchContext(source_topic=self.settings.kafka.topic_events)
        ctx.dead.mask = self._mask_dead_letter
        metrics = self.metrics
        decoded_events = stored = dead_sent = 0
        alerts: list[Alert] = []
        todo = self._not_stored_yet(messages)
        # A few messages at a time: decoded events live only until the sink takes them,
        # so memory follows sink.max_rows, not the size of the take.
        for chunk in _chunks(todo):
            with metrics.timed("decode"):
                decoded = decode_messages(self.codec, chunk, ctx)
            # The stages run once per chunk, over the events of all its partitions.
            events = [e for part in decoded.values() for e in part.events]
            decoded_events += len(events)
            for stage in self.stages:
                with metrics.timed(stage.name):
                    events = stage.process(events, ctx)
            ready = _by_partition(events, decoded)
            # The chunk's alerts and dead letters are out before any of its rows can be
            # stored: a replay skips messages whose rows are stored (see _not_stored_yet).
            alerts.extend(self._send_alerts(ctx))
            dead_sent = self._send_dead_letters(ctx.dead, dead_sent)
            for partition, events, size_bytes in ready:
                self.sink.add(partition, events, size_bytes=size_bytes)
                stored += len(events)
        if self.detect is not None:
            self.detect.flush()  # summaries of suppression windows that closed
            alerts.extend(self._send_alerts(ctx))
        with metrics.timed("sink"):
            self.sink.flush()
        stored -= self._rejected_rows
        self._rejected_rows = 0
        if self.detect is not None and self.detect.engine.chain is not None:
            self.detect.engine.chain.not_stored(ctx.dead.chained + self._rejected_chained)
        self._rejected_chained = []
        self._store_policy_rollup(messages)
        self._store_alerts(alerts)
        self.maybe_checkpoint()
        # Counted once stored: "stored" means in ClickHouse.
        whole_messages = sum(1 for r in ctx.dead.records if r["event_id"] is None)
        metrics.events_in.inc(decoded_events + whole_messages)
        metrics.events_stored.inc(stored)
        metrics.add_counts(ctx.dead.by_reason, metrics.deadletter, "reason")
        metrics.batch_events.observe(decoded_events)
        self._count_stage_extras()
        for message in messages:
            self.next_offsets[message.partition] = message.offset + 1
        return BatchResult(ctx.dead, alerts)

    def maybe_checkpoint(self) -> None:
        """Every checkpoints.interval_s (after a batch, and on the worker's timer while
        none comes): sign the chain heads that advanced. Runs in the batch thread, so a
        head is signed only after its batch's rows were flushed."""
        if time.monotonic() - self._checkpoint_at >= self.settings.checkpoints.interval_s:
            self.checkpoint_now()

    def checkpoint_now(self) -> int:
        """Sign every chain head that advanced since the last checkpoint (also at a clean
        shutdown): rows in ClickHouse, and the copy on the checkpoints topic. Returns the
        number signed."""
        self._checkpoint_at = time.monotonic()
        chain = self.detect.engine.chain if self.detect is not None else None
        if chain is None or not self.settings.checkpoints.enabled:
            return 0
        heads = chain.take_checkpoints()
        if not heads:
            return 0
        checkpoints = self._signer().sign(heads, time.time_ns() // 1_000_000)
        rows = checkpoint_columns(checkpoints)
        self.service.insert(
            InsertRequest(
                table=f"{self.settings.clickhouse.database}.chain_checkpoints",
                column_names=CHECKPOINT_COLUMNS,
                columns=rows,
                rows=len(checkpoints),
                dedup_token="checkpoints:"
                + hashlib.sha256(b"".join(c.signature for c in checkpoints)).hexdigest(),
            )
        )
        if self.on_checkpoints is not None:
            self.on_checkpoints([c.record() for c in checkpoints]).result(timeout=SEND_TIMEOUT_S)
        self.metrics.checkpoints.inc(len(checkpoints))
        return len(checkpoints)

    def _signer(self) -> CheckpointSigner:
        if self._checkpoint_signer is None:
            database = self.settings.clickhouse.database
            self._checkpoint_signer = CheckpointSigner(
                load_key(self.settings),
                self.settings.checkpoints.key_id,
                lambda sandboxes: last_checkpoints(self.service.query_rows, database, sandboxes),
            )
        return self._checkpoint_signer

    def load_stored_offsets(self, partitions: set[int], ends: dict[int, int]) -> None:
        """For partitions just gained: the highest offset whose rows are stored, from
        signed progress below each partition's end (``progress.py``)."""
        assert self.sink.signer is not None
        found = stored_offsets(
            self.service, self.settings.clickhouse.database, partitions, ends, self.sink.signer
        )
        self.stored_upto.update(found.upto)
        self.metrics.sink_progress_rejected.inc(found.rejected)

    def _not_stored_yet(self, messages: Sequence[RawMessage]) -> list[RawMessage]:
        """The messages whose rows are not stored already (a crash between an insert and
        the commit of its offsets replays them; the sink stores whole messages in order)."""
        upto = self.stored_upto
        todo = [m for m in messages if m.offset > upto.get(m.partition, -1)]
        if len(todo) < len(messages):
            skipped = len(messages) - len(todo)
            self.metrics.messages_already_stored.inc(skipped)
            log.info("skipped %d messages stored before a restart", skipped)
        return todo

    def _send_alerts(self, ctx: BatchContext) -> list[Alert]:
        """Send the alerts raised so far (``on_alerts``) and wait until they are out: alert
        latency does not wait for the batch's insert."""
        alerts, ctx.alerts = ctx.alerts, []
        if self.detect is not None and self.detect.alerts:
            alerts.extend(self.detect.take_alerts())
        if not alerts:
            return []
        if self.on_alerts is not None:
            self.on_alerts(alerts).result(timeout=SEND_TIMEOUT_S)
        return alerts

    def _send_dead_letters(self, dead: DeadLetters, already: int) -> int:
        """Store and publish the dead letters after the first ``already``; returns the
        count sent so far."""
        records = dead.records[already:]
        if not records:
            return already
        where = ",".join(f"{r['source_partition']}@{r['source_offset']}" for r in records)
        self.service.insert(
            InsertRequest(
                table=self.deadletter_table,
                column_names=DEADLETTER_COLUMNS,
                columns=record_columns(records),
                rows=len(records),
                dedup_token="dlq:" + hashlib.sha256(where.encode()).hexdigest(),
            )
        )
        if self.on_dead_letters is not None:
            self.on_dead_letters(records).result(timeout=SEND_TIMEOUT_S)
        return len(dead.records)

    def _reject_rows(self, events: Sequence[Event], why: str) -> None:
        """Rows ClickHouse refused for their data (in the insert thread): stored and
        published as dead letters before the sink inserts the rows after them."""
        dead = DeadLetters(mask=self._mask_dead_letter)
        for event in events:
            where = Provenance(
                self.settings.kafka.topic_events,
                event["kafka_partition"],
                event["kafka_offset"],
                None,
            )
            dead.event(where, "storage_rejected", why, event)
        self._send_dead_letters(dead, 0)
        self.metrics.add_counts(dead.by_reason, self.metrics.deadletter, "reason")
        self._rejected_rows += len(events)
        self._rejected_chained += dead.chained
        log.error("ClickHouse refused %d rows for their data (dead-lettered): %s", len(events), why)

    def _store_alerts(self, alerts: list[Alert]) -> None:
        """The batch's alerts, stored once in ClickHouse (a replayed batch gives the same
        alert ids; those already stored are skipped)."""
        if not alerts:
            return
        ids = [a.alert_id for a in alerts]
        stored = {
            str(i)
            for i in self.service.query_column(
                f"SELECT alert_id FROM {self.alerts_table} WHERE alert_id IN %(ids)s",
                {"ids": ids},
            )
        }
        new = [a for a in alerts if a.alert_id not in stored]
        if new:
            self.service.insert(
                InsertRequest(
                    table=self.alerts_table,
                    column_names=ALERT_COLUMNS,
                    columns=alert_columns(new),
                    rows=len(new),
                    dedup_token="alerts:" + hashlib.sha256("".join(ids).encode()).hexdigest(),
                )
            )
        for alert in alerts:
            self.metrics.alerts.labels(alert.rule_id, alert.severity).inc()

    def _store_policy_rollup(self, messages: Sequence[RawMessage]) -> None:
        """The counts of the events the policy kept back, and their chain links."""
        first = messages[0]
        batch = f"{first.partition}:{first.offset}:{len(messages)}"
        for stage in self.stages:
            if not isinstance(stage, PolicyStage):
                continue
            for table, names, columns in (
                (self.rollup_table, ROLLUP_COLUMNS, stage.take_rollup()),
                (self.links_table, LINK_COLUMNS, stage.take_links()),
            ):
                if columns:
                    self.service.insert(
                        InsertRequest(
                            table=table,
                            column_names=names,
                            columns=columns,
                            rows=len(columns[0]),
                            dedup_token=f"{table}:{batch}",
                        )
                    )

    def _count_stage_extras(self) -> None:
        for stage in self.stages:
            if isinstance(stage, PolicyStage) and stage.dropped:
                for (level, category), n in stage.dropped.items():
                    self.metrics.events_dropped_by_policy.labels(level, category).inc(n)
                stage.dropped.clear()
            if isinstance(stage, EnrichStage) and stage.unknown:
                self.metrics.events_unknown_sandbox.inc(stage.unknown)
                stage.unknown = 0
            if isinstance(stage, DedupStage) and stage.dropped:
                self.metrics.events_deduplicated.inc(stage.dropped)
                stage.dropped = 0
            if isinstance(stage, CollapseStage) and stage.collapsed:
                self.metrics.events_collapsed.inc(stage.collapsed)
                stage.collapsed = 0
            if isinstance(stage, DetectStage):
                self.metrics.add_counts(stage.take_matches(), self.metrics.rule_matches, "rule_id")
                suppressed, stage.engine.suppressor.suppressed = (
                    stage.engine.suppressor.suppressed,
                    0,
                )
                self.metrics.alerts_suppressed.inc(suppressed)
                late = stage.engine.late_events
                self.metrics.rule_late_events.inc(max(0, late - self._late_seen))
                self._late_seen = late
                evicted = stage.engine.window_evictions
                self.metrics.rule_window_evictions.inc(max(0, evicted - self._evicted_seen))
                self._evicted_seen = evicted
                self.metrics.rules_enabled.set(len(stage.engine.rules))
                failures = stage.source.reload_failures
                self.metrics.rules_reload_failures.inc(failures - self._reload_failures_seen)
                self._reload_failures_seen = failures
            redactions = getattr(stage, "redactions", None)
            if redactions:
                self.metrics.add_counts(redactions, self.metrics.redactions, "rule")
                redactions.clear()
        retries = getattr(self.service, "retries_total", 0)
        if retries > self._retries_seen:
            self.metrics.sink_insert_retries.inc(retries - self._retries_seen)
            self._retries_seen = retries


def _chunks(messages: Sequence[RawMessage]) -> Iterator[Sequence[RawMessage]]:
    """Messages a few at a time, so decoded events live only until the sink takes them:
    up to DECODE_CHUNK_MESSAGES, or fewer once DECODE_CHUNK_BYTES of them are taken."""
    start = size = 0
    for n, message in enumerate(messages):
        size += len(message.value or b"")
        if n + 1 - start >= DECODE_CHUNK_MESSAGES or size >= DECODE_CHUNK_BYTES:
            yield messages[start : n + 1]
            start, size = n + 1, 0
    if start < len(messages):
        yield messages[start:]


def _by_partition(
    events: list[Event], decoded: dict[int, DecodedPartition]
) -> list[tuple[int, list[Event], int]]:
    """(partition, events, message bytes) for the sink, in partition order."""
    grouped: dict[int, list[Event]] = {p: [] for p in decoded}
    for event in events:
        grouped[event["kafka_partition"]].append(event)
    return [(p, grouped[p], decoded[p].size_bytes) for p in decoded]


def build_app(settings: Settings) -> faust.App:
    """The Faust application with its one agent."""
    settings.worker_data_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.worker.app_id,
        broker=f"kafka://{settings.kafka.bootstrap}",
        value_serializer="raw",
        key_serializer="raw",
        datadir=str(settings.worker_data_dir),
        web_host="127.0.0.1",
        web_bind="127.0.0.1",
        web_port=settings.worker.web_port,
        web_in_thread=False,
        consumer_auto_offset_reset="earliest",
        topic_disable_leader=True,
        topic_partitions=settings.kafka.partitions,
        stream_buffer_maxsize=max(256, 4 * settings.worker.take_messages),
        consumer_max_fetch_size=4 * 1024 * 1024,
        producer_max_request_size=16 * 1024 * 1024,
        broker_commit_interval=1.0,
        # App-wide: a table's own store="rocksdb://" is parsed to a falsy URL and ignored.
        store=settings.worker.table_store,
        # A worker killed without leaving is replaced after this, not Kafka's 45 s.
        broker_session_timeout=settings.worker.session_timeout_s,
        broker_heartbeat_interval=settings.worker.session_timeout_s / 4,
    )
    codec = codec_for(settings)
    stopping = threading.Event()
    service = InsertService(
        lambda: connect(settings.clickhouse),
        retry_initial_s=settings.sink.retry_initial_s,
        retry_max_s=settings.sink.retry_max_s,
        stopping=stopping,
        token_key=load_key(settings),
    )
    # The inventory side of the stream-table join: the compacted topic, read in full and
    # followed. (A Faust GlobalTable over it left faust-streaming 0.15.3's partition
    # assignor hanging at start.)
    inventory = InventoryFollower(settings, codec)
    app.task(inventory.run)
    processor = BatchProcessor(settings, codec, default_stages(settings, inventory), service)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="auditpipe-batch")
    events_topic = app.topic(settings.kafka.topic_events, value_type=bytes, key_type=bytes)
    dedup_stage = next(s for s in processor.stages if isinstance(s, DedupStage))
    dedup_table = app.Table(
        "dedup-window",
        partitions=settings.kafka.partitions,
        key_type=bytes,
        value_type=bytes,
    )
    dedup_state = DedupPersistence(dedup_table, dedup_stage.window)
    rule_state = _rule_state(app, settings, processor)
    dlq_topic = app.topic(settings.kafka.topic_deadletter, value_type=bytes, key_type=bytes)
    checkpoints_topic = app.topic(
        settings.kafka.topic_checkpoints, value_type=bytes, key_type=bytes
    )
    publish_alerts = _alert_publisher(app, settings, codec)
    progress = _Progress(processor.metrics)
    watchdog = StallWatchdog(app, settings.kafka.topic_events, settings.worker.stall_timeout_s)
    gaps = GapGuard()
    known_partitions: set[int] = set()
    """Partitions of the events topic whose stored offsets were loaded since gained."""

    unreadable_seen = 0

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        nonlocal unreadable_seen
        metrics = processor.metrics
        metrics.inventory_unreadable.inc(inventory.unreadable - unreadable_seen)
        unreadable_seen = inventory.unreadable
        metrics.inventory_sandboxes.set(len(inventory.sandboxes))
        body = metrics.exposition(
            lambda: consumer_lag(app, settings.kafka.topic_events, processor.next_offsets)
        )
        # aiohttp takes the charset apart from the content type.
        return web.bytes(body, content_type=PROMETHEUS_CONTENT_TYPE)

    async def _after_batch(event_of_partition: dict[int, Any], caught_up: bool) -> None:
        # The batch's alerts and dead letters went out while it was processed (before its
        # rows were stored); now the state that would make a replay skip it is written.
        dedup_state.persist(event_of_partition)
        if rule_state is not None:
            # Under load, rule windows are written once per interval; a worker that has
            # caught up (or is stopping) writes them at once, so an idle worker holds
            # nothing unwritten.
            rule_state.persist(event_of_partition, now=caught_up)

    @app.agent(events_topic, name="process-events")
    async def process_events(stream: Any) -> None:
        loop = asyncio.get_running_loop()

        def on_alerts(alerts: list[Alert]) -> concurrent.futures.Future[None]:
            return asyncio.run_coroutine_threadsafe(publish_alerts(alerts), loop)

        def on_dead_letters(records: list[dict[str, Any]]) -> concurrent.futures.Future[None]:
            return asyncio.run_coroutine_threadsafe(
                _publish_dead_letters(dlq_topic, codec, records), loop
            )

        def on_checkpoints(records: list[dict[str, Any]]) -> concurrent.futures.Future[None]:
            return asyncio.run_coroutine_threadsafe(
                _publish_checkpoints(checkpoints_topic, records), loop
            )

        # Called in the batch thread, which waits for the send.
        processor.on_alerts = on_alerts
        processor.on_dead_letters = on_dead_letters
        processor.on_checkpoints = on_checkpoints
        take = stream.take_events(settings.worker.take_messages, settings.worker.take_within_s)
        async for taken in take:
            batch = await _without_skips(taken)
            if not batch:
                continue
            messages = [
                RawMessage(e.message.partition, e.message.offset, e.key, e.value) for e in batch
            ]
            completed = False
            try:
                if not inventory.ready.is_set():
                    await _wait_for_inventory(inventory)
                assigned = {
                    tp.partition
                    for tp in app.consumer.assignment()
                    if tp.topic == settings.kafka.topic_events
                }
                event_of_partition = {e.message.partition: e for e in batch}
                known_partitions.intersection_update(assigned)
                gained = set(event_of_partition) - known_partitions
                if gained:
                    for partition in gained:
                        # Set by a batch of an earlier assignment that was still running
                        # when the partition was revoked.
                        processor.next_offsets.pop(partition, None)
                    ends = _partition_ends(app, batch)
                    await loop.run_in_executor(
                        executor, processor.load_stored_offsets, gained, ends
                    )
                    known_partitions.update(gained)
                dedup_state.prepare(set(event_of_partition), assigned)
                if rule_state is not None:
                    rule_state.prepare(set(event_of_partition), assigned, event_of_partition)
                work = loop.run_in_executor(executor, processor.process, messages)
                try:
                    await asyncio.shield(work)
                except asyncio.CancelledError:
                    # Stopping (or losing partitions): finish the batch in progress, whose
                    # rows may be stored already, so that it is acknowledged and committed
                    # instead of replayed by the worker that takes the partitions over.
                    await asyncio.wait_for(work, SHUTDOWN_GRACE_S)
                    await _after_batch(event_of_partition, caught_up=True)
                    completed = True
                    raise
                caught_up = len(taken) < settings.worker.take_messages
                await _after_batch(event_of_partition, caught_up)
            except asyncio.CancelledError:
                if completed:
                    raise  # the batch is stored: let take_events acknowledge it
                for event in batch:
                    event.message.acked = True
                stopping.set()
                raise
            except BaseException as exc:
                # take_events acks the batch even when we leave with an error; marking
                # the messages acked first keeps their offsets out of every commit, so
                # they are consumed again after a restart instead of lost.
                for event in batch:
                    event.message.acked = True
                stopping.set()
                if not isinstance(exc, asyncio.CancelledError | SinkStopped):
                    log.exception(
                        "batch failed; stopping the worker so that it restarts "
                        "from the last committed offsets"
                    )
                    await app.crash(exc)
                raise
            watchdog.batch_done()
            progress.maybe_log()

    async def _without_skips(taken: list[Any]) -> list[Any]:
        """The taken events minus those past offsets the fetcher skipped (GapGuard):
        those are marked acknowledged, which keeps them out of every commit, and their
        partitions are sought back, so they come again in order."""
        consumer: Any = app.consumer
        expected: dict[int, int | None] = {}
        for e in taken:
            partition = e.message.partition
            if partition not in expected:
                committed = consumer._committed_offset.get(e.message.tp)
                expected[partition] = processor.next_offsets.get(partition, committed)
        keep, seeks = gaps.screen(
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
            await rewind(app, settings.kafka.topic_events, {p: (o, o) for p, o in seeks.items()})
        return [e for e, kept in zip(taken, keep, strict=True) if kept]

    async def _watchdog() -> None:
        await watchdog.check(processor.next_offsets)

    @app.on_partitions_revoked.connect
    async def _forget_revoked(_app: Any, /, *args: Any, signal: Any, **_kw: Any) -> None:
        # What this worker processed of a partition says nothing once another worker has
        # it: regained later, its stored offsets are loaded again and its position is
        # the committed offset until a batch of it is processed.
        revoked: set[Any] = args[0]
        for tp in revoked:
            if tp.topic == settings.kafka.topic_events:
                known_partitions.discard(tp.partition)
                processor.next_offsets.pop(tp.partition, None)
                gaps.forget(tp.partition)

    app.timer(5.0)(_watchdog)

    async def _start_deadman() -> None:
        watchdog.start_deadman()

    app.task(_start_deadman)

    async def _dump_tasks_on_sigusr1() -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump_tasks)

    app.task(_dump_tasks_on_sigusr1)

    if processor.detect is not None:
        detect = processor.detect

        async def _reload_on_sighup() -> None:
            def request_reload() -> None:
                log.info("SIGHUP: the rules are checked at the next batch")
                detect.reload_requested = True

            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, request_reload)

        app.task(_reload_on_sighup)

        async def _check_rules() -> None:
            # In the batch thread: a reload never races a batch that is using the rules.
            await asyncio.get_running_loop().run_in_executor(executor, detect.check_reload)

        app.timer(settings.rules.reload_check_s)(_check_rules)

    async def _checkpoint_when_idle() -> None:
        # In the batch thread: after any batch in progress, whose rows are then stored.
        await asyncio.get_running_loop().run_in_executor(executor, processor.maybe_checkpoint)

    app.timer(max(settings.checkpoints.interval_s / 4, 0.05))(_checkpoint_when_idle)

    @app.on_before_shutdown.connect
    async def _stop_retries(_app: Any, /, *_args: Any, signal: Any, **_kw: Any) -> None:
        # A clean stop signs the heads that advanced since the last checkpoint first.
        try:
            await asyncio.wait_for(
                asyncio.get_running_loop().run_in_executor(executor, processor.checkpoint_now),
                SHUTDOWN_GRACE_S,
            )
        except Exception:
            log.exception("no checkpoint at shutdown")
        stopping.set()

    return app


def _rule_state(
    app: faust.App, settings: Settings, processor: BatchProcessor
) -> RuleStatePersistence | None:
    detect = processor.detect
    if detect is None:
        return None
    table = app.Table(
        "rule-windows", partitions=settings.kafka.partitions, key_type=bytes, value_type=bytes
    )
    return RuleStatePersistence(table, lambda: detect.engine, settings.rules.state_interval_s)


def _alert_publisher(app: faust.App, settings: Settings, codec: AvroCodec) -> Any:
    """A coroutine function that sends alerts to the alerts topic (and severity routes)."""
    main = app.topic(settings.kafka.topic_alerts, value_type=bytes, key_type=bytes)
    routes = {
        severity: app.topic(name, value_type=bytes, key_type=bytes)
        for severity, name in settings.rules.routes.items()
    }
    as_json = settings.rules.alert_format == "json"

    async def publish(alerts: list[Alert]) -> None:
        futures = []
        for alert in alerts:
            record = alert.record()
            value = orjson.dumps(record) if as_json else codec.encode(ALERT_SCHEMA, record)
            futures.append(await main.send(key=alert.key, value=value))
            route = routes.get(alert.severity)  # type: ignore[call-overload]
            if route is not None:
                futures.append(await route.send(key=alert.key, value=value))
        if futures:
            await asyncio.gather(*futures)

    return publish


async def _publish_dead_letters(
    topic: Any, codec: AvroCodec, records: list[dict[str, Any]]
) -> None:
    futures = [
        await topic.send(key=record["key"], value=codec.encode(DEADLETTER_SCHEMA, record))
        for record in records
    ]
    if futures:
        await asyncio.gather(*futures)


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


async def _publish_checkpoints(topic: Any, records: list[dict[str, Any]]) -> None:
    futures = [
        await topic.send(
            key=chain_key(record["tenant"], record["sandbox_id"]).encode(),
            value=orjson.dumps(record),
        )
        for record in records
    ]
    if futures:
        await asyncio.gather(*futures)


async def _wait_for_inventory(inventory: InventoryFollower) -> None:
    try:
        await asyncio.wait_for(inventory.ready.wait(), INVENTORY_WAIT_S)
    except TimeoutError:
        log.warning(
            "the sandbox inventory is not read yet after %.0f s; going on (events "
            "of sandboxes not read yet count as unknown)",
            INVENTORY_WAIT_S,
        )


class _Progress:
    """Logs the stored count and rate every PROGRESS_EVERY_S."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self.metrics = metrics
        self.last_at = time.monotonic()
        self.last_stored = 0.0

    def maybe_log(self) -> None:
        now = time.monotonic()
        if now - self.last_at < PROGRESS_EVERY_S:
            return
        sample = self.metrics.registry.get_sample_value
        stored = sample("events_stored_total") or 0.0
        rate = (stored - self.last_stored) / (now - self.last_at)
        log.info("events in %d, stored %d (%.0f/s)", sample("events_in_total") or 0, stored, rate)
        self.last_at, self.last_stored = now, stored


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Run the worker until SIGINT/SIGTERM."""
    app = build_app(settings)
    tune_gc()  # again: what build_app made (Faust's services, the rules) is frozen too
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()
