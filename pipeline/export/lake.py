"""OCSF Parquet for security data lakes, written by ClickHouse: the rows of a range never
become Python objects; ClickHouse shapes them (``ocsf_sql.py``) and writes the Parquet,
and this module only plans the files and copies each response to its place.

Layout as ``writer.py`` documents it (``OUT/<class>/eventDay=YYYYMMDD/part-NNNNN.parquet``).

Plan: one query counts the range's rows by (class, event day); a partition with more
than ``rows_per_file`` rows is cut into slices by the table's sort key (the key of every
``rows_per_file``-th row, one window query), so a file holds at most ``rows_per_file``
rows and each slice is read with the primary key.

Invariants: the range, the tenant and the slice bounds are bound parameters; a file is
written whole to a temporary name and renamed (a reader or an upload never sees half a
file), and a failed query leaves no file behind.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import pyarrow.parquet as pq
from clickhouse_connect.driver.client import Client

from pipeline.export import ocsf_sql
from pipeline.siem.ocsf import CLASSES

PARQUET_SETTINGS = {
    "output_format_parquet_compression_method": "zstd",
    "output_format_parquet_string_as_string": 1,
    "output_format_parquet_row_group_size": 50_000,
}
EVENT_KEY = ("tenant", "sandbox_id", "ts", "seq")
ALERT_KEY = ("tenant", "sandbox_id", "first_ts", "alert_id")
PROGRESS_EVERY_S = 2.0


def folder(class_name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in class_name.lower())


CLASS_FOLDERS = {uid: folder(name) for uid, name in CLASSES.values()} | {2004: "detection_finding"}


@dataclass(frozen=True)
class Part:
    """One file: the rows of one class, one event day and one slice of the sort key."""

    folder: str
    day: int
    rows: int
    sql: str
    params: dict[str, Any]


def _day_range(day: int, params: dict[str, Any]) -> dict[str, Any]:
    """The range's params narrowed to one event day (so the query reads that day's
    partition only)."""
    start = datetime.strptime(str(day), "%Y%m%d").replace(tzinfo=UTC)
    return {
        **params,
        "since": max(params["since"], start),
        "until": min(params["until"], start + timedelta(days=1)),
    }


def _slices(
    client: Client, keys_sql: str, key: tuple[str, ...], params: dict[str, Any], every: int
) -> list[tuple[str, dict[str, Any]]]:
    """(extra condition, its params) of each slice of ``every`` rows in key order."""
    starts = client.query(
        ocsf_sql.slice_starts_sql(keys_sql, key, every), parameters=params
    ).result_rows
    kinds = ("String", "String", "DateTime64(3)", "UInt64" if key[-1] == "seq" else "UUID")
    names = ", ".join(key)

    def bound(side: str, start: Sequence[Any]) -> tuple[str, dict[str, Any]]:
        holders = ", ".join(f"{{{side}{i}:{kind}}}" for i, kind in enumerate(kinds))
        values = {f"{side}{i}": value for i, value in enumerate(start)}
        return f"({names}) {'>=' if side == 'lo' else '<'} ({holders})", values

    out = []
    for i, start in enumerate(starts):
        where, values = bound("lo", start)
        if i + 1 < len(starts):
            upper, more = bound("hi", starts[i + 1])
            where, values = f"{where} AND {upper}", values | more
        out.append((where, values))
    return out


def _queries(database: str, kind: str, class_uid: int, where: str) -> tuple[str, str]:
    """(the records' SQL, the sort keys' SQL) of one class of ``kind`` under ``where``."""
    if kind == "events":
        return (
            ocsf_sql.events_sql(database, class_uid, where),
            ocsf_sql.event_keys_sql(database, class_uid, where),
        )
    keys = f"SELECT {', '.join(ALERT_KEY)} FROM {database}.alerts WHERE {where}"
    return ocsf_sql.alerts_sql(database, where), keys


def _groups(
    client: Client, database: str, kind: str, where: str, params: dict[str, Any]
) -> list[tuple[int, int, int]]:
    """(class_uid, event day, rows) of the range."""
    if kind == "events":
        counts = client.query(ocsf_sql.classes_sql(database, where), parameters=params)
        return [(uid, day, n) for uid, day, n in counts.result_rows]
    sql = (
        f"SELECT toYYYYMMDD(last_ts) AS day, count() FROM {database}.alerts "
        f"WHERE {where} GROUP BY day ORDER BY day"
    )
    return [(2004, day, n) for day, n in client.query(sql, parameters=params).result_rows]


def plan(
    client: Client, database: str, kind: str, where: str, params: dict[str, Any], every: int
) -> list[Part]:
    """The files of ``kind`` ("events" or "alerts") in the range, in order."""
    key = EVENT_KEY if kind == "events" else ALERT_KEY
    parts = []
    for class_uid, day, rows in _groups(client, database, kind, where, params):
        day_params = _day_range(day, params)
        slices: list[tuple[str, dict[str, Any]]] = [("1", {})]
        if rows > every:
            keys_sql = _queries(database, kind, class_uid, where)[1]
            slices = _slices(client, keys_sql, key, day_params, every)
        for i, (extra, values) in enumerate(slices):
            share = rows - every * i if i + 1 == len(slices) else every
            sql = _queries(database, kind, class_uid, f"{where} AND {extra}")[0]
            parts.append(Part(CLASS_FOLDERS[class_uid], day, share, sql, day_params | values))
    return parts


def write(client: Client, part: Part, out: Path, number: int) -> Path:
    """One part as ``OUT/<class>/eventDay=<day>/part-<number>.parquet``."""
    target = out / part.folder / f"eventDay={part.day}"
    target.mkdir(parents=True, exist_ok=True)
    path = target / f"part-{number:05d}.parquet"
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        stream = client.raw_stream(
            part.sql, parameters=part.params, settings=PARQUET_SETTINGS, fmt="Parquet"
        )
        assert isinstance(stream, io.IOBase)  # the sync client's: a urllib3 response
        try:
            with temporary.open("wb") as file:
                shutil.copyfileobj(stream, file, 1 << 20)
        finally:
            stream.close()
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def export(
    client: Client,
    database: str,
    kind: str,
    where: str,
    params: dict[str, Any],
    out: Path,
    rows_per_file: int,
    progress: TextIO = sys.stderr,
) -> Iterator[tuple[Path, int]]:
    """Each file written, with the rows it holds (progress on ``progress``)."""
    parts = plan(client, database, kind, where, params, rows_per_file)
    total = sum(p.rows for p in parts)
    numbers: dict[tuple[str, int], int] = {}
    started = reported = time.monotonic()
    done = 0
    for part in parts:
        number = numbers.get((part.folder, part.day), 0)
        numbers[(part.folder, part.day)] = number + 1
        path = write(client, part, out, number)
        rows = pq.read_metadata(path).num_rows
        yield path, rows
        done += rows
        if time.monotonic() - reported > PROGRESS_EVERY_S:
            reported = time.monotonic()
            rate = done / (reported - started)
            print(f"{kind}: {done:,} of {total:,} ({rate:,.0f}/s)", file=progress, flush=True)
