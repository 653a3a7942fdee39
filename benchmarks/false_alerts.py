"""False alerts of the default pack: alerts per million benign events, by rule.

    python benchmarks/false_alerts.py [--events 10000000] [--sandboxes 200] [--seed 5]

The simulator's benign mix, in chunks of 50,000 events (one minute of fleet time each,
every sandbox active), with benign near misses (``pipeline/sim/near_misses.py``: registry
login retries, ``chmod +x`` of build outputs, ``curl -o`` installers run by ``sh``,
``known_hosts`` reads, artifact uploads to the approved store, tests opening sockets,
``sudo -n`` refused) in randomly chosen sandboxes, ten episodes a chunk, merged in time
order. Every alert here is a false one. The engine runs as in the worker (batches of
5,000, the live chain check on), and windows still open at the end are flushed.
Target: at most 1 alert per million benign events. Prints progress to stderr.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.rules.engine import DetectionEngine
from pipeline.rules.language import load_rules
from pipeline.rules.windows import Watermarks
from pipeline.sim.near_misses import NEAR_MISSES
from pipeline.sim.simulate import FleetSimulator

CHUNK = 50_000
BATCH = 5_000
EPISODES_PER_CHUNK = 10
START_MS = 1_796_000_000_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--sandboxes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    simulator = FleetSimulator(args.sandboxes, tenants=5, seed=args.seed)
    engine = DetectionEngine(load_rules([]), integrity=True)
    names = sorted(NEAR_MISSES)
    alerts: Counter[str] = Counter()
    sequence: Counter[str] = Counter()
    episodes: Counter[str] = Counter()
    seen = near = 0
    started = reported = time.monotonic()
    for chunk_number in range(-(-args.events // CHUNK)):
        clock = START_MS + chunk_number * 60_000
        chunk = list(simulator.events(min(CHUNK, args.events - seen), start_ms=clock))
        end = chunk[-1]["ts"]
        for _ in range(EPISODES_PER_CHUNK):
            name = rng.choice(names)
            episodes[name] += 1
            extra = simulator.scenario_events(name, rng.choice(simulator.fleet), end)
            near += len(extra)
            chunk += extra
        chunk.sort(key=lambda e: e["ts"])
        simulator.with_inventory(chunk)  # the labels the enrich stage would add
        for event in chunk:  # the collector numbers events in the order it sends them
            sequence[event["sandbox_id"]] += 1
            event["seq"] = sequence[event["sandbox_id"]]
        for start in range(0, len(chunk), BATCH):
            alerts.update(a.rule_id for a in engine.process(chunk[start : start + BATCH]))
        seen += len(chunk)
        if time.monotonic() - reported >= 10:
            reported = time.monotonic()
            rate = seen / (reported - started)
            print(f"events: {seen:,} of ~{args.events:,} ({rate:,.0f}/s)", file=sys.stderr)
    alerts.update(a.rule_id for a in engine.suppressor.due(Watermarks(everywhere=1 << 62)))
    per_million = 1e6 / seen
    print(f"{seen:,} benign events ({near:,} in {sum(episodes.values()):,} near-miss episodes)")
    print(f"near misses: {', '.join(f'{n} {c}' for n, c in sorted(episodes.items()))}")
    print(f"alerts: {sum(alerts.values())}, {sum(alerts.values()) * per_million:.2f} per million")
    for rule_id, count in alerts.most_common():
        print(f"  {rule_id:<12} {count:>7}  {count * per_million:.2f} per million")
    met = sum(alerts.values()) <= seen / 1e6
    print(f"target: at most 1 per million: {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
