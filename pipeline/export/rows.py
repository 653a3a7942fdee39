"""Reading a time range of stored events and alerts back as the records the SIEM
shapes take (``pipeline/siem/``).

Invariants: every value a tenant sent reaches the query as a bound parameter, never as
SQL text; rows come in blocks (``query_row_block_stream``), so a month of events never
sits in memory; the order is the table's (tenant, sandbox, ts, seq), so one sandbox's
chain comes out in sequence.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from pipeline.outputs.clickhouse.request_builder import EVENT_COLUMNS
from pipeline.rules.alerts import ALERT_COLUMNS
from pipeline.schema.sql import where_range

EVENT_FIELDS = EVENT_COLUMNS[: EVENT_COLUMNS.index("hash") + 1]
"""The columns of the event itself (the sink's first ones), without enrichment and
provenance."""
ACTOR = ("user", "uid", "pid", "ppid", "process", "cmdline", "parent_process", "parent_cmdline")


def _millis(value: Any) -> int:
    if isinstance(value, datetime):
        return int(value.replace(tzinfo=value.tzinfo or UTC).timestamp() * 1000 + 0.5)
    return int(value)


def _hex(value: Any) -> str | None:
    return value.hex() if isinstance(value, bytes | bytearray) and any(value) else None


def as_event(row: tuple[Any, ...]) -> dict[str, Any]:
    """One events row (``EVENT_FIELDS`` order) as an event record; hashes in hex."""
    event = dict(zip(EVENT_FIELDS, row, strict=True))
    event["ts"] = _millis(event["ts"])
    event["actor"] = {key: event.pop(f"actor_{key}") for key in ACTOR}
    event["prev_hash"], event["hash"] = _hex(event["prev_hash"]), _hex(event["hash"])
    return event


def as_alert(row: tuple[Any, ...]) -> dict[str, Any]:
    alert = dict(zip(ALERT_COLUMNS, row, strict=True))
    for key in ("first_ts", "last_ts"):
        alert[key] = _millis(alert[key])
    alert["alert_id"] = str(alert["alert_id"])
    return alert


def count(client: Client, table: str, time_column: str, params: dict[str, Any]) -> int:
    where = where_range(time_column, params.get("tenant"))
    result = client.query(f"SELECT count() FROM {table} WHERE {where}", parameters=params)
    return int(result.result_rows[0][0])


def blocks(
    client: Client, table: str, columns: tuple[str, ...], time_column: str, params: dict[str, Any]
) -> Iterator[list[tuple[Any, ...]]]:
    """The rows of ``table`` in the range, a block at a time (``table`` and the columns
    are ours, never a tenant's)."""
    sql = (
        f"SELECT {', '.join(columns)} FROM {table} "
        f"WHERE {where_range(time_column, params.get('tenant'))}"
    )
    with client.query_row_block_stream(sql, parameters=params) as stream:
        for block in stream:
            yield [tuple(row) for row in block]
