"""Cost per event of decode, each stream stage and the sink's columns, in-process.

    python benchmarks/stages.py [--events 128000] [--runs 3] [--gc default|tuned]

Encodes --events simulated events (200 sandboxes) into messages of 1,000, then times
decode_messages, each stage of the worker's default chain without detection, and
building the insert requests, over all of them at once (so every decoded event is alive,
as in a worker's take). ``--gc default`` keeps CPython's collector thresholds; ``tuned``
applies the worker's (pipeline/worker/runtime.py). No service is needed.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config import Settings
from pipeline.outputs.clickhouse.request_builder import build_event_request
from pipeline.schema import codec_for
from pipeline.sim.simulate import FleetSimulator
from pipeline.stages.base import BatchContext
from pipeline.stages.decode import RawMessage, decode_messages
from pipeline.worker.runtime import tune_gc
from pipeline.worker.stages import default_stages


def one_run(settings: Settings, messages: list[RawMessage], events: int) -> dict[str, float]:
    codec = codec_for(settings.kafka.schema_registry_url)
    stages = default_stages(settings).all
    ctx = BatchContext("bench")
    costs: dict[str, float] = {}
    started = time.perf_counter()
    decoded = decode_messages(codec, messages, ctx)
    costs["decode"] = time.perf_counter() - started
    batch = [e for part in decoded.values() for e in part.events]
    for stage in stages:
        started = time.perf_counter()
        batch = stage.process(batch, ctx)
        costs[stage.name] = time.perf_counter() - started
    started = time.perf_counter()
    for start in range(0, len(batch), 25_000):
        build_event_request("bench", batch[start : start + 25_000])
    costs["columns"] = time.perf_counter() - started
    costs["total"] = sum(costs.values())
    return {name: seconds / events * 1e6 for name, seconds in costs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=128_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--gc", choices=("default", "tuned"), default="tuned")
    args = parser.parse_args()
    settings = Settings()
    settings.rules.enabled = False
    codec = codec_for(settings.kafka.schema_registry_url)
    events = list(FleetSimulator(200, seed=1).events(args.events))
    messages = [
        RawMessage(
            n % 6,
            n,
            b"bench",
            codec.encode(
                "audit_event_batch",
                {"sandbox_id": "x", "collector": "bench", "sent_at": 0, "events": chunk},
            ),
        )
        for n, chunk in enumerate(events[i : i + 1000] for i in range(0, len(events), 1000))
    ]
    del events
    if args.gc == "tuned":
        tune_gc()
    runs = []
    for run in range(args.runs):
        runs.append(one_run(settings, messages, args.events))
        gc.collect()
        print(f"run {run + 1}: total {runs[-1]['total']:.2f} µs/event", flush=True)
    print(f"\nµs per event, median of {args.runs} runs ({args.events:,} events, gc {args.gc}):")
    for name in runs[0]:
        values = [r[name] for r in runs]
        print(f"  {name:10s} {statistics.median(values):6.2f}")


if __name__ == "__main__":
    main()
