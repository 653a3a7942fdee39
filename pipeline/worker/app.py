"""The Faust worker: consume ``audit.events`` (and ``audit.events.deferred``, what the
rate limits put off), run the stages, store in ClickHouse.

The agent takes messages in batches (``worker.take_messages`` within
``worker.take_within_s``); each message already carries a batch of events, so Faust's
per-message cost is paid once per many events. A thread does the CPU and I/O work of a
batch (decode -> stages -> sink flush) while the event loop keeps the consumer alive.
Faust acknowledges the batch's messages only after that work returned: an offset is
committed only when its events are stored or dead-lettered.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faust

from pipeline.chain.checkpoints import (
    load_key,
)
from pipeline.config import Settings
from pipeline.kafka_clients import faust_credentials
from pipeline.outputs.clickhouse import InsertService
from pipeline.outputs.clickhouse.client import connect
from pipeline.schema import codec_for
from pipeline.worker import decompression
from pipeline.worker.agent import EventsAgent, Priority
from pipeline.worker.batch import BatchProcessor
from pipeline.worker.fence import Fence
from pipeline.worker.health import Health
from pipeline.worker.inventory import InventoryFollower
from pipeline.worker.metrics import WorkerMetrics
from pipeline.worker.runtime import tune_gc
from pipeline.worker.stages import default_stages
from pipeline.worker.state import DedupPersistence, RuleStatePersistence
from pipeline.worker.watchdog import (
    StallWatchdog,
    consumer_lag,
    dump_tasks,
)

log = logging.getLogger("auditpipe.worker")

PROGRESS_EVERY_S = 10.0
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4"


def build_app(settings: Settings) -> faust.App:
    """The Faust application with its one agent. Wiring only: what each part does is in
    its module (``agent``, ``batch``, ``stages``, ``state``, ``watchdog``)."""
    app = _faust_app(settings)
    decompression.install(max(settings.worker.max_batch_bytes, settings.worker.max_message_bytes))
    stopping = threading.Event()
    codec = codec_for(settings.kafka.schema_registry_url, stopping)
    fence = Fence(app)
    service = InsertService(
        lambda: connect(settings.clickhouse),
        retry_initial_s=settings.sink.retry_initial_s,
        retry_max_s=settings.sink.retry_max_s,
        stopping=stopping,
        token_key=load_key(settings),
        fence=fence.check,
    )
    # The inventory side of the stream-table join: the compacted topic, read in full and
    # followed. (A Faust GlobalTable over it left faust-streaming 0.15.3's partition
    # assignor hanging at start.)
    inventory = InventoryFollower(settings, codec)
    app.task(inventory.run)
    processor = BatchProcessor(settings, codec, default_stages(settings, inventory), service)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="auditpipe-batch")
    dedup_table = app.Table(
        "dedup-window", partitions=settings.kafka.partitions, key_type=bytes, value_type=bytes
    )
    watchdog = StallWatchdog(app, settings.kafka.topic_events, settings.worker.stall_timeout_s)
    # Two agents, one batch thread, the same stages and state: the events topic, and the
    # deferred topic (messages over a rate limit, stages/fairness.py), which always runs
    # (turning the limits off leaves no backlog behind).
    agent = EventsAgent(
        app,
        settings,
        processor,
        codec=codec,
        inventory=inventory,
        dedup_state=DedupPersistence(dedup_table, processor.stages.dedup.window),
        rule_state=_rule_state(app, settings, processor),
        stopping=stopping,
        executor=executor,
        watchdog=watchdog,
        priority=Priority(settings.fairness.deferred_every_s),
        fence=fence,
    )
    deferred = agent.deferred_agent()
    _serve_metrics(app, settings, processor, inventory)
    Health(app, settings.kafka.topic_events, watchdog, stopping, _pinger(settings)).serve()
    progress = _Progress(processor.metrics)

    def topic(name: str) -> Any:
        return app.topic(name, value_type=bytes, key_type=bytes)

    @app.agent(topic(settings.kafka.topic_events), name="process-events")
    async def process_events(stream: Any) -> None:
        agent.connect_outputs(asyncio.get_running_loop())
        await agent.run(stream, progress)

    @app.agent(topic(settings.kafka.topic_deferred), name="process-deferred")
    async def process_deferred(stream: Any) -> None:
        deferred.connect_outputs(asyncio.get_running_loop())
        await deferred.run(stream, progress)

    @app.on_partitions_revoked.connect
    async def _forget_revoked(_app: Any, /, *args: Any, signal: Any, **_kw: Any) -> None:
        agent.forget(args[0])
        deferred.forget(args[0])

    _timers_and_signals(app, settings, processor, executor, watchdog, stopping)
    return app


def _faust_app(settings: Settings) -> faust.App:
    settings.worker_data_dir.mkdir(parents=True, exist_ok=True)
    return faust.App(
        settings.worker.app_id,
        broker=f"kafka://{settings.kafka.bootstrap}",
        broker_credentials=faust_credentials(settings.kafka),
        value_serializer="raw",
        key_serializer="raw",
        datadir=str(settings.worker_data_dir),
        web_host=settings.worker.web_bind,
        web_bind=settings.worker.web_bind,
        web_port=settings.worker.web_port,
        web_in_thread=False,
        consumer_auto_offset_reset="earliest",
        topic_disable_leader=True,
        topic_partitions=settings.kafka.partitions,
        # Faust's own topics (the tables' changelogs) as replicated as ours: on a cluster
        # with min.insync.replicas 2, a changelog of one replica could not be written.
        topic_replication_factor=settings.kafka.replication_factor,
        producer_acks=-1,
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


def _pinger(settings: Settings) -> Callable[[], bool]:
    """Whether ClickHouse answers, through a client of its own (made on first use)."""
    clients: list[Any] = []

    def ping() -> bool:
        if not clients:
            clients.append(connect(settings.clickhouse))
        return bool(clients[0].ping())

    return ping


def _serve_metrics(
    app: faust.App, settings: Settings, processor: BatchProcessor, inventory: InventoryFollower
) -> None:
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


def _timers_and_signals(
    app: faust.App,
    settings: Settings,
    processor: BatchProcessor,
    executor: ThreadPoolExecutor,
    watchdog: StallWatchdog,
    stopping: threading.Event,
) -> None:
    """The stall watchdog, SIGUSR1 (dump tasks), SIGHUP and the rule files' reload, the
    idle checkpoint timer and the checkpoint at a clean stop. What touches the stages
    runs in the batch thread: never concurrently with a batch."""

    def in_batch_thread(fun: Any) -> Any:
        return asyncio.get_running_loop().run_in_executor(executor, fun)

    async def _watchdog() -> None:
        await watchdog.check(processor.next_offsets)

    app.timer(5.0)(_watchdog)

    async def _start_deadman() -> None:
        watchdog.start_deadman()

    app.task(_start_deadman)

    async def _dump_tasks_on_sigusr1() -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump_tasks)

    app.task(_dump_tasks_on_sigusr1)
    detect = processor.stages.detect
    if detect is not None:

        async def _reload_on_sighup() -> None:
            def request_reload() -> None:
                log.info("SIGHUP: the rules are checked at the next batch")
                detect.reload_requested = True

            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, request_reload)

        app.task(_reload_on_sighup)

        async def _check_rules() -> None:
            await in_batch_thread(detect.check_reload)

        app.timer(settings.rules.reload_check_s)(_check_rules)

    async def _checkpoint_when_idle() -> None:
        await in_batch_thread(processor.maybe_checkpoint)

    app.timer(max(settings.checkpoints.interval_s / 4, 0.05))(_checkpoint_when_idle)

    @app.on_before_shutdown.connect
    async def _stop_retries(_app: Any, /, *_args: Any, signal: Any, **_kw: Any) -> None:
        # A clean stop signs the heads that advanced since the last checkpoint first.
        try:
            await asyncio.wait_for(
                in_batch_thread(processor.checkpoint_now), settings.worker.shutdown_grace_s
            )
        except Exception:
            log.exception("no checkpoint at shutdown")
        stopping.set()


def _rule_state(
    app: faust.App, settings: Settings, processor: BatchProcessor
) -> RuleStatePersistence | None:
    detect = processor.stages.detect
    if detect is None:
        return None
    table = app.Table(
        "rule-windows", partitions=settings.kafka.partitions, key_type=bytes, value_type=bytes
    )
    return RuleStatePersistence(table, lambda: detect.engine, settings.rules.state_interval_s)


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
        stored = sample("auditpipe_events_stored_total") or 0.0
        rate = (stored - self.last_stored) / (now - self.last_at)
        log.info(
            "events in %d, stored %d (%.0f/s)",
            sample("auditpipe_events_in_total") or 0,
            stored,
            rate,
        )
        self.last_at, self.last_stored = now, stored


def run_worker(
    settings: Settings, loglevel: str = "info", check: Callable[[], None] | None = None
) -> None:
    """Run the worker until SIGINT/SIGTERM. ``check`` runs once the app is built (the
    configuration is then known good): e.g. that the services answer."""
    app = build_app(settings)
    if check is not None:
        check()
    tune_gc()  # again: what build_app made (Faust's services, the rules) is frozen too
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()
