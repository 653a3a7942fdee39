"""The collector for plain synchronous code: ``emit`` from any thread.

A background thread runs the asyncio ``Collector``; ``emit`` puts the event on a bounded
queue and returns, or waits while the queue is full (backpressure, never a drop)::

    with SyncCollector(settings, spool_dir=Path("/var/lib/auditpipe/spool")) as collector:
        collector.emit(event)      # an event dict of schema v1, e.g. from normalize_event
        collector.flush()          # optional: wait until Kafka acknowledged everything
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from pathlib import Path
from typing import Any

from pipeline.collect.collector import Collector
from pipeline.collect.delivery import CollectorStats
from pipeline.config import Settings
from pipeline.schema.event import Event


class SyncCollector:
    def __init__(
        self,
        settings: Settings,
        *,
        spool_dir: Path,
        client_id: str = "collector",
        min_level: str | None = None,
        max_queue: int = 100_000,
    ) -> None:
        self.max_queue = max_queue
        self._collector_args: dict[str, Any] = {
            "settings": settings,
            "spool_dir": spool_dir,
            "client_id": client_id,
            "min_level": min_level,
        }
        self._queue: deque[Event] = deque()
        self._space = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, daemon=True, name="auditpipe-collector"
        )
        self._collector: Collector | None = None
        self._wake: asyncio.Event | None = None
        self._drainer: asyncio.Task[None] | None = None
        self._draining: asyncio.Lock | None = None

    @property
    def stats(self) -> CollectorStats:
        assert self._collector is not None, "start() first"
        return self._collector.stats

    def __enter__(self) -> SyncCollector:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        self._thread.start()
        self._call(self._start())

    def emit(self, event: Event) -> None:
        """Queue one event; waits while max_queue events are already queued."""
        with self._space:
            while len(self._queue) >= self.max_queue:
                self._space.wait()
            self._queue.append(event)
            first = len(self._queue) == 1
        if first and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def flush(self) -> None:
        """Wait until Kafka acknowledged every event emitted before this call."""
        self._call(self._flush())

    def close(self) -> None:
        """Deliver what is queued (what Kafka does not take in time stays in the spool)."""
        if not self._thread.is_alive():
            return
        self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    async def _start(self) -> None:
        self._collector = Collector(**self._collector_args)
        await self._collector.start()
        self._wake = asyncio.Event()
        self._draining = asyncio.Lock()
        self._drainer = asyncio.create_task(self._drain_forever())

    async def _drain_forever(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._drain()

    async def _drain(self) -> None:
        """Hand every queued event to the collector, in order.

        One drain at a time: the background drainer may be part-way through a batch it
        already took off the queue when ``flush`` drains; the lock makes ``flush`` wait
        for that batch, so every event emitted before ``flush`` is in the collector (and
        so covered by its flush) when the flush starts.
        """
        assert self._collector is not None and self._draining is not None
        async with self._draining:
            await self._drain_queue()

    async def _drain_queue(self) -> None:
        assert self._collector is not None
        while True:
            with self._space:
                batch = list(self._queue)
                self._queue.clear()
                self._space.notify_all()
            if not batch:
                return
            for event in batch:
                await self._collector.emit(event)

    async def _flush(self) -> None:
        assert self._collector is not None
        await self._drain()
        await self._collector.flush()

    async def _close(self) -> None:
        assert self._collector is not None and self._drainer is not None
        await self._drain()
        self._drainer.cancel()
        await self._collector.close()
