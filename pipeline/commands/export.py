"""``auditpipe export``: a time range of stored events and alerts as OCSF Parquet laid
out for security data lakes (Amazon Security Lake's custom sources), or as OCSF or ECS
JSON lines (docs/siem.md, "Exporting")."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pipeline.commands.base import UsageError, time_range
from pipeline.config import Settings


def add_parser(sub: Any) -> None:
    from pipeline.export.run import FORMATS

    export = sub.add_parser(
        "export",
        help="write stored events and alerts as OCSF Parquet (data lakes) or OCSF/ECS JSON lines",
        description="Reads a time range of events and alerts from ClickHouse and writes them "
        "as OUT/<class>/eventDay=YYYYMMDD/part-NNNNN.{parquet,jsonl}.",
    )
    export.add_argument("--since", required=True, help="from (epoch ms or RFC 3339)")
    export.add_argument("--until", help="to, excluded (epoch ms or RFC 3339; default: now)")
    export.add_argument("--tenant", help="only this tenant's rows")
    export.add_argument(
        "--what",
        choices=("events", "alerts", "both"),
        default="both",
        help="what to export (default: both)",
    )
    export.add_argument("--format", choices=FORMATS, default="ocsf-parquet")
    export.add_argument("--out", type=Path, required=True, help="the output folder")
    export.add_argument(
        "--rows-per-file", type=int, default=50_000, help="most records in one file"
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.export.run import export, range_params
    from pipeline.outputs.clickhouse.client import connect

    since, until = time_range(args.since, args.until)
    if args.rows_per_file < 1:
        raise UsageError("--rows-per-file must be at least 1")
    kinds = ["events", "alerts"] if args.what == "both" else [args.what]
    client = connect(settings.clickhouse)
    done = export(
        client,
        settings.clickhouse.database,
        kinds,
        args.format,
        args.out,
        range_params(since, until, args.tenant),
        args.rows_per_file,
    )
    for kind, rows in done.rows.items():
        print(f"{kind}: {rows:,} exported")
    print(f"{len(done.files)} files under {args.out}")
    return 0
