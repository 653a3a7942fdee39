"""``auditpipe inventory put|load``: write the sandbox inventory (the compacted topic
``audit.sandboxes``, which the worker follows: ``pipeline/worker/inventory.py``)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from pipeline.commands.base import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE
from pipeline.config import Settings


def add_parser(sub: Any) -> None:
    inventory = sub.add_parser("inventory", help="write the sandbox inventory (audit.sandboxes)")
    inv = inventory.add_subparsers(dest="inventory_command", required=True, metavar="ACTION")
    put = inv.add_parser("put", help="add or replace one sandbox")
    put.add_argument("--sandbox-id", required=True)
    put.add_argument("--tenant", required=True)
    put.add_argument("--owner", default="")
    put.add_argument("--environment", default="", help="dev, staging, prod-replica, ...")
    put.add_argument("--image", default="")
    put.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    put.add_argument("--created-at", help="epoch ms or RFC 3339 (default: now)")
    load = inv.add_parser("load", help="add or replace the sandboxes of a JSON-lines file")
    load.add_argument("file", metavar="FILE|-")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.collect.publisher import read_lines
    from pipeline.schema import codec_for
    from pipeline.schema.event import InvalidEvent
    from pipeline.worker.inventory import parse_record, put_records, read_records

    if args.inventory_command == "put":
        labels = dict(label.split("=", 1) for label in args.label if "=" in label)
        if len(labels) != len(args.label):
            print("auditpipe: --label takes KEY=VALUE", file=sys.stderr)
            return EXIT_USAGE
        raw = {
            "sandbox_id": args.sandbox_id,
            "tenant": args.tenant,
            "owner": args.owner,
            "environment": args.environment,
            "image": args.image,
            "labels": labels,
        }
        if args.created_at:
            raw["created_at"] = (
                int(args.created_at) if args.created_at.isdigit() else args.created_at
            )
        try:
            records, errors = [parse_record(raw)], list[str]()
        except InvalidEvent as exc:
            print(f"auditpipe: {exc}", file=sys.stderr)
            return EXIT_USAGE
    else:
        try:
            records, errors = read_records(read_lines(args.file))
        except FileNotFoundError:
            print(f"auditpipe: {args.file}: no such file", file=sys.stderr)
            return EXIT_USAGE
    for error in errors:
        print(f"{getattr(args, 'file', '')}: {error}", file=sys.stderr)
    sent = asyncio.run(
        put_records(settings, codec_for(settings.kafka.schema_registry_url), records)
    )
    print(
        f"inventory: {sent} sandboxes written to {settings.kafka.topic_sandboxes}; "
        f"{len(errors)} bad lines"
    )
    return EXIT_PARTIAL if errors else EXIT_OK
