"""Dedup window: memory per key held, and the stage's throughput.

    python benchmarks/dedup.py [--keys 5000000] [--runs 3]

Fills one partition's window (10 minutes, 10 buckets) with --keys keys spread evenly over
the window, as a worker at keys/600 events/s would, then measures the memory the window
holds (tracemalloc, which numpy reports to, and the RSS growth) per key. Then times
DedupStage.process on simulated events (xxh3 hashing of the key and the content digest
included).
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import process_memory_mb
from pipeline.config import DedupConfig
from pipeline.sim.simulate import FleetSimulator
from pipeline.stages.base import BatchContext
from pipeline.stages.dedup import DedupStage, DedupWindow


def memory_per_key(keys: int) -> tuple[float, float]:
    rng = random.Random(1)
    gc.collect()
    rss_before = process_memory_mb()
    tracemalloc.start()
    window = DedupWindow(window_s=600, buckets=10)
    batch = 10_000
    for start in range(0, keys, batch):
        now = 600.0 * start / keys  # spread over the window: 9 frozen buckets + the current
        keys_and_contents = [rng.getrandbits(64) for _ in range(2 * batch)]
        window.check(0, keys_and_contents[:batch], keys_and_contents[batch:], now)
        window.take_added()  # the worker hands these to the table and lets them go
    traced, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    held = window.keys_held()
    return traced / held, (process_memory_mb() - rss_before) * 1024 * 1024 / held


def stage_rate(events: int) -> float:
    batch = list(FleetSimulator(50, seed=3).events(events))
    for event in batch:
        event["kafka_partition"] = 0
    stage = DedupStage(DedupConfig())
    started = time.perf_counter()
    for start in range(0, events, 8000):
        stage.process(batch[start : start + 8000], BatchContext("t"))
    return events / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=5_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    traced, rss = zip(*(memory_per_key(args.keys) for _ in range(args.runs)), strict=True)
    print(
        f"window of {args.keys:,} keys: median {statistics.median(traced):.1f} bytes/key "
        f"traced (runs {' / '.join(f'{v:.1f}' for v in traced)}), RSS growth "
        f"{statistics.median(rss):.1f} bytes/key (runs {' / '.join(f'{v:.1f}' for v in rss)})"
    )
    rates = [stage_rate(300_000) for _ in range(args.runs)]
    print(
        f"DedupStage.process: median {statistics.median(rates):,.0f} events/s "
        f"(runs {' / '.join(f'{r:,.0f}' for r in rates)})"
    )


if __name__ == "__main__":
    main()
