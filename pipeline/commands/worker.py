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
    from pipeline.worker.app import run_worker

    def services_answer() -> None:
        asyncio.run(_kafka_answers(settings))
        _clickhouse_answers(settings)

    run_worker(settings, loglevel=args.loglevel, check=services_answer)
    return EXIT_OK


async def _kafka_answers(settings: Settings) -> None:
    """Raises KafkaConnectionError when no broker answers (then ``main`` prints one line
    and exits 3; Faust would print a traceback and exit 1)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap)
    try:
        await admin.start()
    finally:
        await admin.close()


def _clickhouse_answers(settings: Settings) -> None:
    """Raises OperationalError when the server does not answer."""
    from pipeline.outputs.clickhouse.client import connect

    connect(settings.clickhouse).command("SELECT 1")
