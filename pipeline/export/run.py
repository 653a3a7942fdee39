"""One export: each table's rows in the range, shaped, into the partitioned writer, with
progress on stderr (rows done of the range's count, and the rate)."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from clickhouse_connect.driver.client import Client

from pipeline.export import lake
from pipeline.export.rows import EVENT_FIELDS, as_alert, as_event, blocks, count
from pipeline.export.writer import PartitionedWriter
from pipeline.rules.alerts import ALERT_COLUMNS
from pipeline.schema.sql import where_range
from pipeline.siem import ecs, ocsf

FORMATS = ("ocsf-parquet", "ocsf-json", "ecs-json")
PROGRESS_EVERY_S = 2.0


@dataclass(frozen=True)
class Kind:
    table: str
    columns: tuple[str, ...]
    time_column: str
    record: Callable[[tuple[Any, ...]], dict[str, Any]]
    ms: str
    """The record's time field, for its event day."""
    shapes: dict[str, Callable[[dict[str, Any]], dict[str, Any]]]


KINDS = {
    "events": Kind(
        "events", EVENT_FIELDS, "ts", as_event, "ts", {"ocsf": ocsf.event, "ecs": ecs.event}
    ),
    "alerts": Kind(
        "alerts",
        ALERT_COLUMNS,
        "last_ts",
        as_alert,
        "last_ts",
        {"ocsf": ocsf.alert, "ecs": ecs.alert},
    ),
}


@dataclass
class Exported:
    rows: dict[str, int] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)


def partition_of(schema: str, kind: str, shaped: dict[str, Any]) -> str:
    if schema == "ecs":
        return f"ecs_{kind}"
    return re.sub(r"[^a-z0-9]+", "_", str(shaped.get("class_name", "base_event")).lower())


def export(
    client: Client,
    database: str,
    kinds: list[str],
    fmt: str,
    out: Path,
    params: dict[str, Any],
    rows_per_file: int = 50_000,
    progress: TextIO = sys.stderr,
) -> Exported:
    done = Exported()
    if fmt == "ocsf-parquet":  # ClickHouse shapes and writes (lake.py)
        for name in kinds:
            kind = KINDS[name]
            where = where_range(kind.time_column, params.get("tenant"))
            done.rows[name] = 0
            for path, rows in lake.export(
                client, database, name, where, params, out, rows_per_file, progress
            ):
                done.files.append(path)
                done.rows[name] += rows
        return done
    schema = fmt.split("-")[0]
    writer = PartitionedWriter(out, rows_per_file)
    for name in kinds:
        kind = KINDS[name]
        table = f"{database}.{kind.table}"
        total = count(client, table, kind.time_column, params)
        shape = kind.shapes[schema]
        started = reported = time.monotonic()
        rows = 0
        for block in blocks(client, table, kind.columns, kind.time_column, params):
            for row in block:
                record = kind.record(row)
                shaped = shape(record)
                writer.add(partition_of(schema, name, shaped), record[kind.ms], shaped)
            rows += len(block)
            if time.monotonic() - reported > PROGRESS_EVERY_S:
                reported = time.monotonic()
                rate = rows / (reported - started)
                print(f"{name}: {rows:,} of {total:,} ({rate:,.0f}/s)", file=progress, flush=True)
        done.rows[name] = rows
    writer.close()
    done.files = writer.files
    return done


def range_params(since_ms: int, until_ms: int, tenant: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {
        "since": datetime.fromtimestamp(since_ms / 1000, UTC),
        "until": datetime.fromtimestamp(until_ms / 1000, UTC),
    }
    if tenant:
        params["tenant"] = tenant
    return params
