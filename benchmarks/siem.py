"""The cost of the SIEM shapes: µs per record, serialized, for each format.

    python benchmarks/siem.py [--runs 5] [--events 20000]

Events: simulated fleet events (``FleetSimulator``) shaped as OCSF 1.8.0, ECS and CEF
and serialized (orjson for the JSON formats), as the coming events forwarding will.
Alerts: the alerts of the destination tests (with hostile strings) shaped the same way,
then framed as the RFC 5424 syslog message the syslog destination writes. Medians of
--runs; no service is needed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.outputs.forwarding.shapes import shape_for
from pipeline.outputs.syslog.request_builder import message
from pipeline.siem import cef, ecs, ocsf
from pipeline.sim.simulate import FleetSimulator
from tests.outputs.alerts_for_tests import alerts, items


def timed(call: Callable[[Any], Any], items: list[Any], runs: int) -> float:
    costs = []
    for _ in range(runs):
        started = time.perf_counter()
        for item in items:
            call(item)
        costs.append((time.perf_counter() - started) / len(items) * 1e6)
    return statistics.median(costs)


def serialized(shape: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda record: orjson.dumps(shape(record))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    events = [dict(e) for e in FleetSimulator(50, seed=1).events(args.events)]
    batch = items(alerts(5_000))
    print(f"µs per record, medians of {args.runs} runs")
    print(f"{'format':<8} {'event':>8} {'alert':>8} {'alert as syslog':>16}")
    for name, event_shape in (
        ("ocsf", serialized(ocsf.event)),
        ("ecs", serialized(ecs.event)),
        ("cef", cef.event),
    ):
        shape = shape_for(name)
        per_event = timed(event_shape, events, args.runs)
        as_record = shape if name == "cef" else serialized(shape)
        per_alert = timed(as_record, batch, args.runs)
        per_syslog = timed(lambda a, s=shape: message(a, s(a)), batch, args.runs)
        print(f"{name:<8} {per_event:>8.1f} {per_alert:>8.1f} {per_syslog:>16.1f}")


if __name__ == "__main__":
    main()
