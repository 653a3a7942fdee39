"""``auditpipe forward``: alerts to SIEMs (Splunk HEC, syslog CEF/JSON, HTTPS JSON lines),
each destination of ``forward.destinations`` with its own consumer group, at its own
pace (docs/siem.md)."""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

from pipeline.config import Settings


def add_parser(sub: Any) -> None:
    forward = sub.add_parser(
        "forward",
        help="deliver alerts to SIEMs (Splunk HEC, syslog, HTTPS): forward.destinations",
        description="Reads the alerts topic and delivers each alert to every configured "
        "destination; commits only what was delivered or dead-lettered with its reason.",
    )
    forward.add_argument(
        "--destination",
        action="append",
        metavar="NAME",
        help="run only this destination (repeatable; default: all)",
    )
    forward.add_argument(
        "--idle-timeout",
        type=float,
        default=0.0,
        metavar="S",
        help="stop after this many seconds without a new alert (default: run until stopped)",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.forward.app import forward

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    counts = asyncio.run(forward(settings, args.destination, args.idle_timeout))
    for name, count in counts.items():
        print(f"{name}: {count} alerts delivered")
    return 0
