"""`auditpipe publish` alone: a JSON-lines file of simulated events to Kafka.

    python benchmarks/publish.py [--events 300000] [--runs 3] [--sandboxes 200]

Needs the local stack (`auditpipe stack up`) or AUDITPIPE_KAFKA_BOOTSTRAP. Each run
publishes the same file to a fresh topic with the real CLI (parse, check, encode, send,
acks=all) and reads its own figure (events/s acknowledged) from its summary line.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.e2e import isolated, measure_publish_cli, write_jsonl
from pipeline.commands.init import create_topics
from pipeline.config import load_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sandboxes", type=int, default=200)
    args = parser.parse_args()
    base = load_settings()
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "events.jsonl"
        write_jsonl(source, args.events, args.sandboxes)
        rates = []
        for run in range(1, args.runs + 1):
            settings = isolated(base, uuid.uuid4().hex[:8], Path(tmp) / f"home{run}")
            asyncio.run(create_topics(settings))
            rates.append(measure_publish_cli(settings, source, args.events))
            print(f"run {run}: {rates[-1]:,.0f} events/s", flush=True)
    print(
        f"median of {args.runs}: {statistics.median(rates):,.0f} events/s "
        f"(runs {' / '.join(f'{r:,.0f}' for r in rates)})"
    )


if __name__ == "__main__":
    main()
