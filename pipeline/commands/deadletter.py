"""``auditpipe deadletter list|replay``: look at dead letters, and send them through the
pipeline again once what rejected them is fixed (a schema registered, a limit raised).

Dead letters are read from ClickHouse ``audit.deadletter``. One event that failed goes
back as that event (its JSON, with its ``event_id``, ``seq`` and hashes); a whole message
that could not be decoded goes back as its original bytes, with its key. Each replayed
dead letter is recorded in ``audit.deadletter_replays`` and skipped by the next replay
unless ``--again``. A replayed letter that fails again becomes a new dead letter.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from clickhouse_connect.driver.client import Client

from pipeline.collect.publisher import EventPublisher
from pipeline.commands.base import EXIT_OK, EXIT_PARTIAL, since_ms
from pipeline.config import Settings
from pipeline.kafka_clients import client_args
from pipeline.schema import codec_for
from pipeline.schema.event import InvalidEvent, normalize_event


@dataclass
class ReplayReport:
    events: int = 0
    messages: int = 0
    unusable: int = 0
    """Dead letters whose original is not a valid event any more (left as they are)."""


def summary(client: Client, database: str) -> list[Sequence[Any]]:
    return list(
        client.query(
            f"SELECT reason, count(), min(failed_at), max(failed_at) FROM {database}.deadletter "
            "GROUP BY reason ORDER BY count() DESC"
        ).result_rows
    )


def select(
    client: Client, database: str, *, reasons: list[str], since_ms: int | None, again: bool
) -> list[Sequence[Any]]:
    where = []
    parameters: dict[str, Any] = {}
    if reasons:
        where.append("d.reason IN {reasons:Array(String)}")
        parameters["reasons"] = reasons
    if since_ms is not None:
        where.append("d.failed_at >= fromUnixTimestamp64Milli({since:Int64})")
        parameters["since"] = since_ms
    if not again:
        where.append(
            "(d.source_topic, d.source_partition, d.source_offset, ifNull(d.event_id, '')) "
            f"NOT IN (SELECT source_topic, source_partition, source_offset, event_id "
            f"FROM {database}.deadletter_replays)"
        )
    sql = (
        f"SELECT d.source_topic, d.source_partition, d.source_offset, d.event_id, "
        f"d.key, hex(d.original) FROM {database}.deadletter AS d"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + " ORDER BY d.source_partition, d.source_offset"
    )
    return list(client.query(sql, parameters=parameters).result_rows)


async def replay(settings: Settings, client: Client, rows: Sequence[Sequence[Any]]) -> ReplayReport:
    report = ReplayReport()
    replayed: list[list[Any]] = []
    codec = codec_for(settings.kafka.schema_registry_url)
    producer = AIOKafkaProducer(
        **client_args(settings.kafka),
        acks="all",
        enable_idempotence=True,
        client_id="deadletter-replay",
        max_request_size=16 * 1024 * 1024,
    )
    await producer.start()
    try:
        async with EventPublisher(settings, codec, client_id="deadletter-replay") as publisher:
            for topic, partition, offset, event_id, key, original_hex in rows:
                original = bytes.fromhex(original_hex)
                if event_id is not None:
                    try:
                        event = normalize_event(orjson.loads(original), now_ms=0)
                    except (orjson.JSONDecodeError, InvalidEvent):
                        report.unusable += 1
                        continue
                    await publisher.add(event)
                    report.events += 1
                else:
                    await producer.send_and_wait(
                        settings.kafka.topic_events, original, key=key.encode() if key else None
                    )
                    report.messages += 1
                replayed.append([topic, partition, offset, event_id or ""])
    finally:
        await producer.stop()
    if replayed:
        columns = [list(c) for c in zip(*replayed, strict=True)]
        client.insert(
            f"{settings.clickhouse.database}.deadletter_replays",
            columns,
            column_names=["source_topic", "source_partition", "source_offset", "event_id"],
            column_oriented=True,
        )
    return report


def add_parser(sub: Any) -> None:
    deadletter = sub.add_parser("deadletter", help="list dead letters, or replay them after a fix")
    dl = deadletter.add_subparsers(dest="deadletter_command", required=True, metavar="ACTION")
    dl.add_parser("list", help="dead letters by reason")
    again = dl.add_parser("replay", help="send dead letters through the pipeline again")
    again.add_argument(
        "--reason", action="append", default=[], help="only this reason (repeatable)"
    )
    again.add_argument("--since", help="only dead letters from then on (epoch ms or RFC 3339)")
    again.add_argument("--again", action="store_true", help="include ones already replayed")
    again.add_argument("--dry-run", action="store_true", help="count, send nothing")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.outputs.clickhouse.client import connect

    client = connect(settings.clickhouse)
    database = settings.clickhouse.database
    if args.deadletter_command == "list":
        for reason, count, first, last in summary(client, database):
            print(f"{reason:<20} {count:>10}  {first} .. {last}")
        return EXIT_OK
    since = since_ms(args.since)
    rows = select(client, database, reasons=args.reason, since_ms=since, again=args.again)
    if args.dry_run:
        print(f"would replay {len(rows)} dead letters")
        return EXIT_OK
    report = asyncio.run(replay(settings, client, rows))
    print(
        f"replayed {report.events} events and {report.messages} messages; "
        f"{report.unusable} not usable"
    )
    return EXIT_PARTIAL if report.unusable else EXIT_OK
