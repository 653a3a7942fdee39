"""One batch of messages through the worker: decode -> stages -> sink, in the batch
thread, with every side output drained from the typed context (``stages/base.py``): dead
letters stored and published before the rows after them, alerts published as soon as a
chunk raised them and stored once, the policy's counts and chain links stored, counters
to the metrics; and the signed checkpoints of the chain heads, once their rows are
stored.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from pipeline.chain.checkpoints import CheckpointSigner, last_checkpoints, load_key
from pipeline.config import Settings
from pipeline.outputs.base import Outputs
from pipeline.outputs.clickhouse import ClickHouseSink, InsertService
from pipeline.outputs.clickhouse.fencing import cancel_inserts_of_others
from pipeline.outputs.clickhouse.output import ClickHouseOutput
from pipeline.outputs.clickhouse.progress import ProgressSigner, stored_offsets
from pipeline.outputs.clickhouse.tables import Tables
from pipeline.rules.alerts import Alert
from pipeline.schema.codec import AvroCodec
from pipeline.schema.deadletter import DeadLetters, Provenance
from pipeline.schema.event import Event
from pipeline.stages.base import BatchContext
from pipeline.stages.decode import DecodedPartition, DecodeLimits, RawMessage, decode_messages
from pipeline.worker.metrics import WorkerMetrics
from pipeline.worker.stages import Stages

log = logging.getLogger("auditpipe.worker")

DECODE_CHUNK_MESSAGES = 64
DECODE_CHUNK_BYTES = 1 << 20


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
        stages: Stages,
        service: InsertService,
        metrics: WorkerMetrics | None = None,
        *,
        deferred: bool = False,
    ) -> None:
        self.settings = settings
        self.codec = codec
        self.stages = stages
        self.service = service
        self.metrics = metrics or WorkerMetrics()
        self.deferred = deferred
        """Whether this processor takes the deferred topic (``deferred_path``)."""
        self.topic = settings.kafka.topic_deferred if deferred else settings.kafka.topic_events
        self.main: BatchProcessor | None = None
        """For the deferred path: the events topic's processor, which signs checkpoints."""
        self.tables = Tables(settings.clickhouse.database)
        self.limits = DecodeLimits(
            settings.worker.max_message_bytes, settings.worker.max_events_per_message
        )
        self.sink = ClickHouseSink(
            service,
            table=self.tables.events,
            max_rows=settings.sink.max_rows,
            max_bytes=settings.sink.max_bytes,
            executor=ThreadPoolExecutor(max_workers=1, thread_name_prefix="auditpipe-insert"),
            on_rejected=self._reject_rows,
            signer=ProgressSigner(load_key(settings), self.topic, deferred=deferred),
        )
        self._rejected_rows = 0
        """Rows ClickHouse refused for good since the last batch (dead-lettered)."""
        self._rejected_chained: list[tuple[str, str, int]] = []
        """Chained events the sink dead-lettered in this batch (see ChainMonitor)."""
        self.outputs = Outputs([ClickHouseOutput(service, self.tables)])
        """Where side outputs go (``outputs/base.py``); the worker adds its topics."""
        self._checkpoint_at = time.monotonic()
        self._checkpoint_signer: CheckpointSigner | None = None
        self.stored_upto: dict[int, int] = {}
        """Per partition gained: the highest offset already stored (see progress.py)."""
        self.next_offsets: dict[int, int] = {}
        """Per partition, the offset after the last message processed (for the lag)."""
        self._retries_seen = 0
        self._registry_retries_seen = 0

    def deferred_path(self) -> BatchProcessor:
        """The processor of the deferred topic (``stages/fairness.py``): the same stages
        and their state (but the fairness stage), outputs, metrics and checkpoints; its
        own sink, whose rows are marked deferred and whose progress is kept apart."""
        other = BatchProcessor(
            self.settings,
            self.codec,
            self.stages.for_deferred(),
            self.service,
            self.metrics,
            deferred=True,
        )
        other.outputs = self.outputs
        other.main = self
        return other

    def process(self, messages: Sequence[RawMessage]) -> BatchResult:
        ctx = BatchContext(source_topic=self.topic)
        ctx.dead.mask = self.stages.mask
        metrics = self.metrics
        decoded_events = stored = dead_sent = 0
        alerts: list[Alert] = []
        todo = self._not_stored_yet(messages)
        kept_back = _KeptBackWrites(self.outputs, messages, self.topic)
        # A few messages at a time: decoded events live only until the sink takes them,
        # so memory follows sink.max_rows, not the size of the take.
        for chunk in _chunks(todo):
            with metrics.timed("decode"):
                decoded = decode_messages(self.codec, chunk, ctx, self.limits)
            # The stages run once per chunk, over the events of all its partitions.
            events = [e for part in decoded.values() for e in part.events]
            decoded_events += len(events)
            for stage in self.stages.all:
                with metrics.timed(stage.name):
                    events = stage.process(events, ctx)
            # The chunk's alerts, dead letters and kept-back counts are out before any of
            # its rows can be stored: a replay skips messages whose rows are stored (see
            # _not_stored_yet), and would not make them again.
            alerts.extend(self._send_alerts(ctx))
            dead_sent = self._send_dead_letters(ctx.dead, dead_sent)
            self._send_deferred(ctx, chunk)
            for partition, rows, size_bytes in _by_partition(events, decoded):
                if self.sink.would_insert(len(rows), size_bytes):
                    kept_back.write(ctx)
                self.sink.add(partition, rows, size_bytes=size_bytes)
                stored += len(rows)
        for stage in self.stages.all:
            stage.finish(ctx)  # e.g. summaries of suppression windows that closed
        alerts.extend(self._send_alerts(ctx))
        kept_back.write(ctx)
        with metrics.timed("sink"):
            self.sink.flush()
        stored -= self._rejected_rows
        self._rejected_rows = 0
        if self.stages.chain is not None:
            self.stages.chain.not_stored(ctx.dead.chained + self._rejected_chained)
        self._rejected_chained = []
        self.outputs.flush()  # e.g. the batch's alerts, stored once in ClickHouse
        for alert in alerts:
            metrics.alerts.labels(alert.rule_id, alert.severity).inc()
        self.maybe_checkpoint()
        # Counted once stored: "stored" means in ClickHouse.
        whole_messages = sum(1 for r in ctx.dead.records if r["event_id"] is None)
        deferred = ctx.counted("events_deferred")  # counted in when taken from there
        metrics.events_in.inc(decoded_events - deferred + whole_messages)
        metrics.events_stored.inc(stored)
        metrics.add_counts(ctx.dead.by_reason, metrics.deadletter, "reason")
        metrics.batch_events.observe(decoded_events)
        metrics.drain(ctx.counts, ctx.gauges)
        self._count_retries()
        for message in messages:
            self.next_offsets[message.partition] = message.offset + 1
        if self.deferred and self.stages.fair is not None:
            self.stages.fair.drained(m.key for m in messages)
        return BatchResult(ctx.dead, alerts)

    def maybe_checkpoint(self) -> None:
        """Every checkpoints.interval_s (after a batch, and on the worker's timer while
        none comes): sign the chain heads that advanced. Runs in the batch thread, so a
        head is signed only after its batch's rows were flushed. The deferred path's are
        signed by the events topic's processor (one signer: the checkpoints chain)."""
        if self.main is not None:
            self.main.maybe_checkpoint()
            return
        if time.monotonic() - self._checkpoint_at >= self.settings.checkpoints.interval_s:
            self.checkpoint_now()

    def checkpoint_now(self) -> int:
        """Sign every chain head that advanced since the last checkpoint (also at a clean
        shutdown): rows in ClickHouse, and the copy on the checkpoints topic. Returns the
        number signed."""
        self._checkpoint_at = time.monotonic()
        chain = self.stages.chain
        if chain is None or not self.settings.checkpoints.enabled:
            return 0
        heads = chain.take_checkpoints()
        if not heads:
            return 0
        checkpoints = self._signer().sign(heads, time.time_ns() // 1_000_000)
        self.outputs.write("checkpoints", checkpoints)
        self.outputs.flush()
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
        signed progress below each partition's end (``progress.py``), read once the
        inserts in flight of a worker that held them before are cancelled (a worker
        frozen past its session, ``fencing.py``)."""
        assert self.sink.signer is not None
        killed = cancel_inserts_of_others(
            self.service, self.service.worker_id, self.sink.signer.source, partitions
        )
        self.metrics.zombie_inserts_cancelled.inc(killed)
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
        """Write the alerts raised so far: a topic has them at once (alert latency does
        not wait for the batch's insert); the store keeps them until the flush."""
        alerts, ctx.alerts = ctx.alerts, []
        self.outputs.write("alerts", alerts)
        return alerts

    def _send_deferred(self, ctx: BatchContext, chunk: Sequence[RawMessage]) -> None:
        """Write the messages the fairness stage deferred, before any row after them may
        be stored (a replay skips messages older than a stored row)."""
        if not ctx.deferred:
            return
        wanted = set(ctx.deferred)
        ctx.deferred = []
        self.outputs.write("deferred", [m for m in chunk if (m.partition, m.offset) in wanted])

    def _send_dead_letters(self, dead: DeadLetters, already: int) -> int:
        """Write the dead letters after the first ``already``; returns the count written."""
        self.outputs.write("dead_letters", dead.records[already:])
        return len(dead.records)

    def _reject_rows(self, events: Sequence[Event], why: str) -> None:
        """Rows ClickHouse refused for their data (in the insert thread): stored and
        published as dead letters before the sink inserts the rows after them."""
        dead = DeadLetters(mask=self.stages.mask)
        for event in events:
            where = Provenance(
                self.topic,
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

    def _count_retries(self) -> None:
        """Inserts and registry requests retried (running totals): counted, never as
        dropped."""
        retries = self.service.retries_total
        if retries > self._retries_seen:
            self.metrics.sink_insert_retries.inc(retries - self._retries_seen)
            self._retries_seen = retries
        resolver = self.codec.resolver
        if resolver is not None and resolver.retries_total > self._registry_retries_seen:
            self.metrics.schema_registry_retries.inc(
                resolver.retries_total - self._registry_retries_seen
            )
            self._registry_retries_seen = resolver.retries_total


class _KeptBackWrites:
    """The policy's counts and chain links, written to the outputs (and taken off the
    context) before rows after them may be stored: at the end of the batch, and before
    the sink inserts in the middle of one."""

    def __init__(self, outputs: Outputs, messages: Sequence[RawMessage], topic: str) -> None:
        first = messages[0]
        self.outputs = outputs
        self.batch = f"{topic}/{first.partition}:{first.offset}:{len(messages)}"
        self.writes = 0

    def write(self, ctx: BatchContext) -> None:
        if not ctx.kept_back and not ctx.links:
            return
        origin = f"{self.batch}/{self.writes}"
        self.writes += 1
        self.outputs.write("rollup", list(ctx.kept_back.items()), origin)
        self.outputs.write("links", ctx.links, origin)
        ctx.kept_back, ctx.links = Counter(), []


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
