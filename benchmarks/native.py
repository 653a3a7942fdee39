"""The C speedups against the pure-Python code, per event, in one process (no service).

    python benchmarks/native.py [--events 100000] [--runs 5]

For each hot path: microseconds per event with the C code and without it (the same
functions with ``speedups`` set to None), medians of the runs, and their ratio:

* seal: number and chain a sandbox's events (``ChainHead.seal_many``);
* link: check one event's hash (the worker's live chain check);
* encode: one event's Avro binary (``EventBatchEncoder.encode``);
* seal + encode: what ``Collector.emit`` does per event (``ChainHead.seal_encoded``);

and the worker's decode of a batch message of 1,000 events (``AvroCodec.decode``): one
written with the newest schema (the C decoder), and one written with schema v1 by a
collector of an earlier release (the generic reader, resolving v1 to v2).

Events come from the fleet simulator, made before the timing.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline import native
from pipeline.chain import hashing as chain
from pipeline.chain.hashing import GENESIS, ChainHead
from pipeline.schema import batch
from pipeline.schema.batch import EventBatchEncoder
from pipeline.schema.codec import SINGLE_OBJECT_MAGIC, AvroCodec
from pipeline.schema.registry import SchemaRegistry
from pipeline.sim.simulate import FleetSimulator

Case = Callable[[list[dict[str, Any]]], None]


def cases(codec: AvroCodec) -> dict[str, Case]:
    encoder = EventBatchEncoder(codec, collector="bench")  # C or Python, as patched

    def seal(events: list[dict[str, Any]]) -> None:
        ChainHead().seal_many(events)

    def link(events: list[dict[str, Any]]) -> None:
        for event in events:
            chain.link(GENESIS, event)

    def encode(events: list[dict[str, Any]]) -> None:
        for event in events:
            encoder.encode(event)

    def seal_encode(events: list[dict[str, Any]]) -> None:
        head = ChainHead()
        for event in events:
            head.seal_encoded(event, encoder.encode)

    return {"seal": seal, "link": link, "encode": encode, "seal + encode": seal_encode}


def per_event_us(case: Case, events: list[dict[str, Any]], runs: int) -> float:
    times = []
    for _ in range(runs):
        fresh = copy.deepcopy(events)
        started = time.perf_counter()
        case(fresh)
        times.append((time.perf_counter() - started) / len(events) * 1e6)
    return statistics.median(times)


def decode_us(codec: AvroCodec, events: list[dict[str, Any]], runs: int) -> dict[str, float]:
    """µs per event to decode batch messages of 1,000 events, newest schema and v1."""
    registry = codec.registry
    v1 = next(v for v in registry.versions() if v.name == "audit_event_batch" and v.version == 1)
    newest: list[bytes] = []
    old: list[bytes] = []
    for start in range(0, len(events), 1_000):
        chunk = copy.deepcopy(events[start : start + 1_000])
        record = {"sandbox_id": "sb", "collector": "bench", "sent_at": 1, "events": chunk}
        newest.append(codec.encode("audit_event_batch", record))
        for event in chunk:
            for key in ("parent_process", "parent_cmdline"):
                event["actor"].pop(key, None)
        old.append(SINGLE_OBJECT_MAGIC + v1.fingerprint + v1.fast.binary_encode(record))
    out = {}
    for name, messages in (("decode v2 (C)", newest), ("decode v1", old)):
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            for message in messages:
                codec.decode(message)
            times.append((time.perf_counter() - started) / len(events) * 1e6)
        out[name] = statistics.median(times)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if not native.available():
        sys.exit("the C speedups are not built here (see README, Installing)")
    codec = AvroCodec(SchemaRegistry.load())
    events = [dict(e) for e in FleetSimulator(50, seed=1).events(args.events)]
    with_c = {name: per_event_us(case, events, args.runs) for name, case in cases(codec).items()}
    decoding = decode_us(codec, events, args.runs)  # with the C speedups in place
    chain.speedups = batch.speedups = None  # the pure-Python code from here on
    python = {name: per_event_us(case, events, args.runs) for name, case in cases(codec).items()}
    print(f"{args.events:,} events, medians of {args.runs} runs, µs per event")
    print(f"{'path':<15}{'C':>8}{'Python':>10}{'ratio':>8}")
    for name in with_c:
        ratio = python[name] / with_c[name]
        print(f"{name:<15}{with_c[name]:>8.2f}{python[name]:>10.2f}{ratio:>7.1f}x")
    print(
        f"decode, µs per event: v2 message (C) {decoding['decode v2 (C)']:.2f}, v1 message "
        f"(resolved) {decoding['decode v1']:.2f}, ratio "
        f"{decoding['decode v1'] / decoding['decode v2 (C)']:.1f}x"
    )


if __name__ == "__main__":
    main()
