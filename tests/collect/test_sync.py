"""SyncCollector hands every event emitted before ``flush`` to the collector first."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pipeline.collect import sync
from pipeline.collect.delivery import CollectorStats
from pipeline.config import Settings


class SlowCollector:
    """Stands in for the Kafka collector: ``emit`` yields, ``flush`` notes what it covers."""

    def __init__(self, **_: Any) -> None:
        self.stats = CollectorStats()
        self.emitted = 0
        self.covered_by_flush: list[int] = []

    async def start(self) -> None:
        return None

    async def emit(self, event: Any) -> None:
        await asyncio.sleep(0.001)
        self.emitted += 1

    async def flush(self) -> None:
        self.covered_by_flush.append(self.emitted)

    async def close(self) -> None:
        return None


def test_flush_covers_the_batch_the_background_drainer_is_part_way_through(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sync, "Collector", SlowCollector)
    with sync.SyncCollector(Settings(), spool_dir=tmp_path) as collector:
        for _ in range(200):
            collector.emit({})
        time.sleep(0.05)  # the drainer has taken the queue and is part-way through it
        collector.flush()
        fake = collector._collector
        assert isinstance(fake, SlowCollector)
        assert fake.covered_by_flush == [200]


def test_flush_from_a_thread_while_others_emit_covers_what_they_emitted_before(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sync, "Collector", SlowCollector)
    per_thread, threads = 300, 4
    with sync.SyncCollector(Settings(), spool_dir=tmp_path, max_queue=100) as collector:
        workers = [
            threading.Thread(target=lambda: [collector.emit({}) for _ in range(per_thread)])
            for _ in range(threads)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        collector.flush()
        fake = collector._collector
        assert isinstance(fake, SlowCollector)
        assert fake.covered_by_flush == [per_thread * threads]
