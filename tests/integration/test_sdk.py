"""The collector SDK on a real broker: the synchronous API from several threads, and the
collector-side level filter, whose filtered events are counted, never silently dropped."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from pathlib import Path

import pytest

from pipeline.collect.collector import Collector
from pipeline.collect.sync import SyncCollector
from pipeline.commands.init import create_topics
from pipeline.config import Settings
from pipeline.sim.simulate import FleetSimulator
from tests.integration.test_collector import assert_chains_continuous, read_events

pytestmark = pytest.mark.integration


def test_sync_collector_from_several_threads(isolated_settings: Settings, tmp_path: Path) -> None:
    settings = isolated_settings
    asyncio.run(create_topics(settings))
    per_thread = 5000

    def emit_all(collector: SyncCollector, seed: int) -> None:
        for event in FleetSimulator(1, seed=seed, run_id=f"t{seed}").events(per_thread):
            collector.emit(event)

    with SyncCollector(settings, spool_dir=tmp_path / "spool", max_queue=1000) as collector:
        threads = [threading.Thread(target=emit_all, args=(collector, n)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        collector.flush()
        assert collector.stats.delivered == 4 * per_thread

    events = read_events(settings, 4 * per_thread)
    assert len(events) == 4 * per_thread
    assert Counter(e["sandbox_id"] for e in events) == {
        f"sb-t{n}-00000": per_thread for n in range(4)
    }
    assert_chains_continuous(events)


def test_level_filter_counts_what_it_keeps_back(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    settings = isolated_settings
    asyncio.run(create_topics(settings))
    source = list(FleetSimulator(2, seed=6).events(3000))
    below = Counter(
        (e["sandbox_id"], e["category"], e["level"]) for e in source if e["level"] == "debug"
    )
    assert below, "the simulated mix has debug events"

    async def run() -> None:
        async with Collector(settings, spool_dir=tmp_path / "spool", min_level="info") as collector:
            await collector.emit_many(source)

    asyncio.run(run())
    kept = len(source) - sum(below.values())
    events = read_events(settings, kept + 2)

    assert not [e for e in events if e["level"] == "debug"]
    counts = [e for e in events if e["action"] == "filtered_counts"]
    assert len(counts) == 2  # one per sandbox
    reported = Counter()
    for event in counts:
        assert event["category"] == "lifecycle"
        assert event["attributes"]["min_level"] == "info"
        for key, value in event["attributes"].items():
            if key.endswith(".debug"):
                reported[(event["sandbox_id"], key.split(".")[0], "debug")] = int(value)
    assert reported == below
    assert len(events) == kept + 2
    assert_chains_continuous(events)  # filtered events never took a seq: no gaps
