"""``auditpipe worker``: run the Faust worker (``pipeline/worker/app.py``)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from pipeline.commands.base import EXIT_OK
from pipeline.config import Settings


def add_parser(sub: Any) -> None:
    worker = sub.add_parser("worker", help="run the Faust worker (Kafka -> stages -> ClickHouse)")
    worker.add_argument("--loglevel", default="info", choices=("debug", "info", "warning", "error"))


def run(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.outputs import kafka
    from pipeline.outputs.clickhouse.client import connect
    from pipeline.outputs.clickhouse.healthcheck import healthcheck
    from pipeline.worker.app import run_worker

    def destinations_ready() -> None:
        # One line and exit 3 when they are not (Faust would print a traceback).
        topics = kafka.worker_topics(settings)
        asyncio.run(kafka.healthcheck(settings.kafka, topics, settings.worker.app_id))
        clickhouse = settings.clickhouse
        healthcheck(connect(clickhouse), clickhouse.database, clickhouse.url)

    run_worker(settings, loglevel=args.loglevel, check=destinations_ready)
    return EXIT_OK
