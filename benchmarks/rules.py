"""Detection engine throughput: 200 rules over simulated events, in one process.

    python benchmarks/rules.py [--rules 200] [--events 200000] [--runs 5]

The rule set is the default pack plus generated rules up to --rules, in the pack's
proportions of kinds: event rules over every category (contains, startswith, endswith,
regex, in-list, CIDR, numeric, with nocase and not), and threshold and sequence rules.
The generated rules look for values the simulator never produces, so, as in production,
almost every event passes every rule without firing. The events (the simulator's benign
mix with all attack scenarios injected) are decoded dicts, enriched like the worker's;
the engine runs over batches of 5,000, as the worker hands them over, with the live
chain check on (the worker's default; the simulator's events carry seq, not hashes).
Printed: events/s per run and the median, for the full set, for the pack alone, and the
ratio of the two measured in the same run.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.rules.engine import DetectionEngine
from pipeline.rules.language import RuleSet, load_rules, parse_rules
from pipeline.sim.scenarios import SCENARIOS
from pipeline.sim.simulate import FleetSimulator

BATCH = 5_000
CATEGORIES = ("process", "file", "network", "permission", "data_transfer", "config", "api", "auth")


def generated_rule(i: int, rng: random.Random) -> dict[str, Any]:
    """One synthetic rule that never fires on the simulator's events."""
    word = f"zz{i:04d}{rng.choice('abcdefgh')}"
    category = CATEGORIES[i % len(CATEGORIES)]
    shapes: list[dict[str, Any]] = [
        {"actor.cmdline": {"contains": [f" --{word}", f"/{word}/"]}},
        {"object": {"startswith": [f"/opt/{word}", f"/srv/{word}"]}},
        {"object": {"endswith": f"/{word}.sh"}},
        {"actor.process": {"in": [word, f"{word}d", f"{word}-cli"]}},
        {"actor.cmdline": {"regex": f"{word}\\s+-[a-z]+"}},
        {"object": {"contains": word.upper(), "nocase": True}},
        {"all": [{"object_host": {"cidr": f"10.{i % 250}.0.0/16"}}, {"object_port": i + 20000}]},
        {"all": [{"bytes": {"gt": 10**12 + i}}, {"not": {"actor.uid": 0}}]},
        {"attributes.tool": word},
    ]
    rule: dict[str, Any] = {
        "id": f"GEN-{i:04d}",
        "title": f"generated {i}",
        "severity": "low",
        "condition": {"all": [{"category": category}, shapes[i % len(shapes)]]},
    }
    if i % 10 == 0:  # 1 in 10: a threshold
        rule["threshold"] = {"window": "5m", "count": {"gte": 50}}
    elif i % 10 == 5:  # 1 in 10: a sequence
        second = {"all": [{"category": "network"}, {"object_host": f"{word}.example"}]}
        rule["sequence"] = {
            "within": "5m",
            "steps": [{"condition": rule.pop("condition")}, {"condition": second}],
        }
    return rule


def rule_set(total: int) -> RuleSet:
    pack = load_rules([])
    rng = random.Random(7)
    extra = [generated_rule(i, rng) for i in range(max(0, total - len(pack.rules)))]
    generated = parse_rules(yaml.safe_load(yaml.safe_dump({"rules": extra})), "<generated>")
    return RuleSet(pack.rules + generated.rules, pack.lists)


def events(count: int) -> list[dict[str, Any]]:
    simulator = FleetSimulator(sandboxes=200, tenants=5, seed=3)
    out = list(simulator.events(count, scenarios=sorted(SCENARIOS)))
    for e in out:  # what enrich adds
        e.update(owner="ana", environment="dev", image="python:3.11", labels={}, severity="low")
    return out


def rate(ruleset: RuleSet, batch: list[dict[str, Any]]) -> tuple[float, int]:
    engine = DetectionEngine(ruleset, integrity=True)  # as in the worker: the chain check on
    for e in batch:
        e.pop("matched_rules", None)
    alerts = 0
    started = time.perf_counter()
    for start in range(0, len(batch), BATCH):
        alerts += len(engine.process(batch[start : start + BATCH]))
    return len(batch) / (time.perf_counter() - started), alerts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rules", type=int, default=200)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    full = rule_set(args.rules)
    pack = load_rules([])
    kinds = {k: sum(r.kind == k for r in full.rules) for k in ("event", "threshold", "sequence")}
    print(f"rules: {len(full.rules)} ({kinds}); pack alone: {len(pack.rules)}")
    batch = events(args.events)
    print(f"events: {len(batch):,} (batches of {BATCH:,})")
    full_rates, pack_rates, ratios = [], [], []
    for run in range(1, args.runs + 1):
        full_rate, alerts = rate(full, batch)
        pack_rate, _ = rate(pack, batch)
        full_rates.append(full_rate)
        pack_rates.append(pack_rate)
        ratios.append(full_rate / pack_rate)
        print(
            f"run {run}: {len(full.rules)} rules {full_rate:,.0f} events/s ({alerts} alerts); "
            f"pack {pack_rate:,.0f} events/s; ratio {full_rate / pack_rate:.2f}"
        )
    print(
        f"median: {len(full.rules)} rules {statistics.median(full_rates):,.0f} events/s; "
        f"pack ({len(pack.rules)} rules) {statistics.median(pack_rates):,.0f} events/s; "
        f"ratio {statistics.median(ratios):.2f}"
    )


if __name__ == "__main__":
    main()
