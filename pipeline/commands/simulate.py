"""``auditpipe simulate``: publish the events of a simulated fleet (``pipeline/sim``)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from pipeline.commands.base import EXIT_OK
from pipeline.config import Settings
from pipeline.sim.scenarios import SCENARIOS


def simulation_args(
    p: argparse.ArgumentParser, *, sandboxes: int, rate: float, duration: float
) -> None:
    """The fleet's options (``simulate`` and ``run``)."""
    p.add_argument("--sandboxes", type=int, default=sandboxes, help="fleet size (%(default)s)")
    p.add_argument("--tenants", type=int, default=3, help="tenants of the fleet (%(default)s)")
    p.add_argument(
        "--rate",
        type=float,
        default=rate,
        help="events per second, whole fleet (%(default)s; 0 = as fast as possible)",
    )
    p.add_argument("--duration", type=float, default=duration, help="seconds (%(default)s)")
    p.add_argument("--seed", type=int, default=None, help="random seed (reproducible fleet)")
    p.add_argument(
        "--scenario",
        action="append",
        default=[],
        choices=sorted(SCENARIOS),
        metavar="NAME",
        help="inject an attack scenario (repeatable): " + ", ".join(sorted(SCENARIOS)),
    )


def add_parser(sub: Any) -> None:
    simulate = sub.add_parser("simulate", help="publish the events of a simulated fleet")
    simulation_args(simulate, sandboxes=50, rate=5000, duration=10)
    simulate.add_argument(
        "--events",
        type=int,
        default=0,
        help="publish exactly this many events as fast as possible (overrides --rate/--duration)",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.collect.publisher import EventPublisher
    from pipeline.schema import codec_for
    from pipeline.sim.simulate import FleetSimulator, run_paced

    sim = FleetSimulator(args.sandboxes, tenants=args.tenants, seed=args.seed)
    codec = codec_for(settings.kafka.schema_registry_url)

    async def go() -> int:
        async with EventPublisher(settings, codec, client_id="simulate") as publisher:
            if args.events:
                await publisher.add_many(sim.events(args.events, scenarios=args.scenario))
            else:
                await run_paced(
                    sim,
                    publisher.add,
                    rate=args.rate,
                    duration_s=args.duration,
                    scenarios=args.scenario,
                )
        print(
            f"simulated {args.sandboxes} sandboxes (run {sim.run_id}): published "
            f"{publisher.stats.events} events in {publisher.stats.messages} messages "
            f"({publisher.stats.rate():,.0f} events/s)"
        )
        return EXIT_OK

    return asyncio.run(go())
