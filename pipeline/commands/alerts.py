"""``auditpipe alerts tail``: an alert consumer, and the example of a SIEM/SOAR integration.

It reads ``audit.alerts`` (Avro or JSON, whichever the worker writes: each Avro message
names its schema), keeps the alerts at or above ``--severity`` and prints one line per
alert, or one JSON object per line with ``--json`` (for piping into a forwarder)::

    auditpipe alerts tail --severity high --json | your-tool

(``auditpipe forward`` delivers them to SIEMs itself: docs/siem.md.)

With ``--group`` it joins a consumer group and commits what it printed, so a restarted
forwarder goes on where it stopped; without one it starts at the end (or at the
beginning with ``--from-beginning``) and commits nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from pipeline.config import Settings
from pipeline.forward.source import decode_alert
from pipeline.kafka_clients import client_args
from pipeline.rules.language import SEVERITIES
from pipeline.schema import codec_for
from pipeline.schema.codec import AvroCodec


def format_alert(alert: dict[str, Any]) -> str:
    def when(ms: Any) -> str:
        if isinstance(ms, datetime):
            return ms.isoformat(timespec="milliseconds")
        return datetime.fromtimestamp(int(ms) / 1000, UTC).isoformat(timespec="milliseconds")

    count = f" x{alert['count']}" if alert.get("count", 1) != 1 else ""
    return (
        f"{when(alert['last_ts'])} {alert['severity'].upper():<8} {alert['rule_id']:<14} "
        f"{alert['tenant']}/{alert['sandbox_id']}{count}: {alert['title']} "
        f"[evidence {', '.join(alert.get('evidence', [])[:3])}"
        f"{' ...' if len(alert.get('evidence', [])) > 3 else ''}]"
    )


def _jsonable(alert: dict[str, Any]) -> dict[str, Any]:
    return {
        k: int(v.timestamp() * 1000) if isinstance(v, datetime) else v for k, v in alert.items()
    }


async def tail(
    settings: Settings,
    *,
    severity: str = "low",
    as_json: bool = False,
    group: str | None = None,
    from_beginning: bool = False,
    limit: int = 0,
    idle_timeout_s: float = 0.0,
    topic: str | None = None,
    out: Callable[[str], None] = print,
) -> int:
    """Print alerts until interrupted (or ``limit`` alerts, or ``idle_timeout_s`` of quiet)."""
    codec = codec_for(settings.kafka.schema_registry_url)
    minimum = SEVERITIES.index(severity)
    consumer = AIOKafkaConsumer(
        topic or settings.kafka.topic_alerts,
        **client_args(settings.kafka),
        group_id=group,
        # Committed by hand, up to the last alert taken: with --limit, the ones after it
        # are shown by the next run of the same group, not skipped.
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning or group else "latest",
    )
    await consumer.start()
    shown = 0
    quiet_s = 0.0
    taken: dict[Any, int] = {}
    try:
        while not limit or shown < limit:
            batches = await consumer.getmany(timeout_ms=1000)
            if not batches:
                quiet_s += 1.0
                if idle_timeout_s and quiet_s >= idle_timeout_s:
                    break
                continue
            quiet_s = 0.0
            for partition, records in batches.items():
                for record in records:
                    if limit and shown >= limit:
                        break
                    taken[partition] = record.offset + 1
                    if _show(codec, record, minimum, as_json, out):
                        shown += 1
            if group is not None and taken:
                await consumer.commit(taken)
    finally:
        await consumer.stop()
    return shown


def _show(
    codec: AvroCodec, record: Any, minimum: int, as_json: bool, out: Callable[[str], None]
) -> bool:
    """Print one alert record if it is severe enough; whether it was printed."""
    alert = decode_alert(codec, record.value or b"")
    if alert is None:
        print(f"skipped an undecodable message at offset {record.offset}", file=sys.stderr)
        return False
    if SEVERITIES.index(alert["severity"]) < minimum:
        return False
    out(orjson.dumps(_jsonable(alert)).decode() if as_json else format_alert(alert))
    return True


def run_tail(settings: Settings, **kwargs: Any) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(tail(settings, **kwargs))
    return 0


def add_parser(sub: Any) -> None:
    alerts = sub.add_parser("alerts", help="consume the alerts topic (the SIEM/SOAR example)")
    alert_actions = alerts.add_subparsers(dest="alerts_command", required=True, metavar="ACTION")
    tail = alert_actions.add_parser("tail", help="print alerts as they arrive")
    tail.add_argument(
        "--severity",
        default="low",
        choices=("low", "medium", "high", "critical"),
        help="only this severity and above (%(default)s)",
    )
    tail.add_argument("--json", action="store_true", help="one JSON object per line")
    tail.add_argument("--topic", help="read this topic (a severity route) instead of the main one")
    tail.add_argument("--group", help="consumer group: commit and resume where it stopped")
    tail.add_argument("--from-beginning", action="store_true", help="start at the oldest alert")
    tail.add_argument("--limit", type=int, default=0, help="stop after this many alerts")
    tail.add_argument(
        "--idle-timeout", type=float, default=0.0, help="stop after this many quiet seconds"
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    return run_tail(
        settings,
        severity=args.severity,
        as_json=args.json,
        group=args.group,
        from_beginning=args.from_beginning,
        limit=args.limit,
        idle_timeout_s=args.idle_timeout,
        topic=args.topic,
    )
