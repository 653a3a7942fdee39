"""Throughput over secured connections against plaintext, in the same run.

    python benchmarks/secure.py [--events 300000] [--runs 3]

Needs the plain local stack (`auditpipe stack up`, or AUDITPIPE_KAFKA_BOOTSTRAP /
AUDITPIPE_CLICKHOUSE_URL) and starts a secured one of its own (`stack up --secure`, on
free ports, under a temporary home). Each run, in turn, on fresh topics and databases:

* plain: Kafka PLAINTEXT, ClickHouse http (the plain stack);
* sasl_ssl: Kafka SASL_SSL with SCRAM-SHA-512 (the secured broker), ClickHouse http (the
  plain stack): what TLS and SASL cost the Kafka clients;
* sasl_ssl+https: both secured (the ClickHouse https port is the secured stack's TLS
  front, a Python relay: see docs/security.md).

For each: the SDK publisher's events/s (acknowledged by Kafka), and a real `auditpipe
worker`'s events/s from its start to the last row stored (default configuration). It
prints medians over the runs and the ratios to plain.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import e2e
from benchmarks._common import compare_modes
from pipeline.commands.init import apply_migrations, create_topics, load_migrations
from pipeline.config import Settings, load_settings
from pipeline.outputs.clickhouse.client import connect
from pipeline.stack import LocalStack
from tests.integration.helpers import private_secured_stack

MODES = ("plain", "sasl_ssl", "sasl_ssl+https")


def secured_stack(home: Path, plain: Settings) -> LocalStack:
    stack: LocalStack = private_secured_stack(home, plain.home.resolve() / "kafka" / "libs", "1g")
    stack.up()
    return stack


def mode_settings(mode: str, plain: Settings, secured: dict[str, Any], home: Path) -> Settings:
    data = plain.model_dump()
    if mode != "plain":
        data["kafka"] |= secured["kafka"]
    if mode == "sasl_ssl+https":
        data["clickhouse"] |= secured["clickhouse"]
    tag = uuid.uuid4().hex[:8]
    settings = e2e.isolated(Settings(**data), tag, home / tag)
    asyncio.run(create_topics(settings))
    apply_migrations(connect(settings.clickhouse), settings.clickhouse.database, load_migrations())
    return settings


def one_run(
    mode: str, plain: Settings, secured: dict[str, Any], home: Path, events: int
) -> tuple[float, float]:
    settings = mode_settings(mode, plain, secured, home)
    published = asyncio.run(e2e.measure_publish_sdk(settings, events, 200))
    stored, _ = e2e.measure_worker(e2e.variant(settings, "w"), connect(settings.clickhouse), events)
    return published, stored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    plain = load_settings()
    home = Path(tempfile.mkdtemp(prefix="auditpipe-secure-bench-"))
    stack = secured_stack(home / "stack", plain)
    try:
        secured = yaml.safe_load((stack.tls_root / "client.yaml").read_text())
        compare_modes(
            MODES,
            args.runs,
            args.events,
            lambda m: one_run(m, plain, secured, home, args.events),
        )
    finally:
        stack.down()


if __name__ == "__main__":
    main()
