"""One worker variant's throughput on a fresh topic: for A/B runs of two checkouts.

    python benchmarks/worker_variant.py [--events 500000] [--variant minimal|stages]

Needs the local stack (`auditpipe stack up`) or AUDITPIPE_KAFKA_BOOTSTRAP /
AUDITPIPE_CLICKHOUSE_URL. Publishes --events simulated events (200 sandboxes) with
`auditpipe publish` to a topic of its own, then starts one `auditpipe worker` of the
variant (minimal: decode, validate and the sink; stages: the stream stages without
detection) and prints events/s from its start to the last row stored. Shorter than
benchmarks/e2e.py, so two checkouts can be alternated (A, B, A, B) on a noisy machine.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import e2e
from pipeline.commands.init import apply_migrations, create_topics, load_migrations
from pipeline.config import Settings
from pipeline.outputs.clickhouse.client import connect
from tests.conftest import free_port
from tests.integration.helpers import WorkerProcess, scalar


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--variant", choices=("minimal", "stages"), default="minimal")
    args = parser.parse_args()
    tag = uuid.uuid4().hex[:8]
    home = Path(tempfile.mkdtemp(prefix=f"auditpipe-variant-{tag}-"))
    settings = e2e.isolated(Settings(), tag, home)
    settings.worker.web_port = free_port()
    asyncio.run(create_topics(settings))
    client = connect(settings.clickhouse)
    apply_migrations(client, settings.clickhouse.database, load_migrations())
    source = home / "events.jsonl"
    e2e.write_jsonl(source, args.events, 200)
    e2e.measure_publish_cli(settings, source, args.events)
    if args.variant == "stages":
        chosen = e2e.variant(settings, "s", rules={"enabled": False})
    else:
        off = {"enabled": False}
        chosen = e2e.variant(settings, "m", dedup=off, redact=off, rules=off)
    worker = WorkerProcess(chosen, name="variant-worker").start()
    started = time.perf_counter()
    table = f"{chosen.clickhouse.database}.events"
    while int(scalar(client, f"SELECT count() FROM {table}")) < args.events:
        time.sleep(0.05)
    rate = args.events / (time.perf_counter() - started)
    worker.stop()
    print(f"{args.variant}: {rate:,.0f} events/s ({args.events:,} events)")


if __name__ == "__main__":
    main()
