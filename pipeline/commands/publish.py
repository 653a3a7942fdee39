"""``auditpipe publish FILE|-``: JSON-lines events to Kafka (no chain: see collect)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from pipeline.commands.base import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE
from pipeline.config import Settings

MAX_LINE_ERRORS_SHOWN = 100


def add_parser(sub: Any) -> None:
    publish = sub.add_parser("publish", help="publish JSON-lines events from FILE or - (stdin)")
    publish.add_argument("file", metavar="FILE|-")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.collect.publisher import LineError, publish_json_lines, read_lines
    from pipeline.schema import codec_for

    path = args.file
    shown = 0

    def report(error: LineError) -> None:
        nonlocal shown
        shown += 1
        if shown <= MAX_LINE_ERRORS_SHOWN:
            print(f"{path}:{error.line}: {error.message}", file=sys.stderr)

    try:
        lines = read_lines(path)
        codec = codec_for(settings.kafka.schema_registry_url)
        stats = asyncio.run(publish_json_lines(settings, codec, lines, report))
    except FileNotFoundError:
        print(f"auditpipe: {path}: no such file", file=sys.stderr)
        return EXIT_USAGE
    if shown > MAX_LINE_ERRORS_SHOWN:
        print(f"... and {shown - MAX_LINE_ERRORS_SHOWN} more bad lines", file=sys.stderr)
    print(
        f"published {stats.events} events in {stats.messages} messages "
        f"({stats.rate():,.0f} events/s); rejected {stats.rejected} bad lines"
    )
    return EXIT_PARTIAL if stats.rejected else EXIT_OK
