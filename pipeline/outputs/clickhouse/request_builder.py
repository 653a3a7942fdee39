"""Column-oriented insert requests: events for ``audit.events``, and the side outputs
(dead letters, alerts, counts, links, checkpoints) for their tables.

Columns are built once per batch (one list comprehension per column), never per event
through the client's row path: clickhouse-connect then writes the Native format directly.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.chain.checkpoints import CHECKPOINT_COLUMNS, checkpoint_columns
from pipeline.outputs.base import Records
from pipeline.outputs.clickhouse.progress import MAC_BYTES, ProgressSigner
from pipeline.outputs.clickhouse.tables import (
    LINK_COLUMNS,
    ROLLUP_COLUMNS,
    Tables,
    link_columns,
    rollup_columns,
)
from pipeline.rules.alerts import ALERT_COLUMNS, alert_columns
from pipeline.schema.deadletter import DEADLETTER_COLUMNS, record_columns
from pipeline.schema.event import Event

EVENT_COLUMNS = (
    "event_id",
    "ts",
    "tenant",
    "sandbox_id",
    "seq",
    "category",
    "action",
    "level",
    "outcome",
    "actor_user",
    "actor_uid",
    "actor_pid",
    "actor_ppid",
    "actor_process",
    "actor_cmdline",
    "actor_parent_process",
    "actor_parent_cmdline",
    "object",
    "bytes",
    "attributes",
    "prev_hash",
    "hash",
    "owner",
    "environment",
    "image",
    "labels",
    "sandbox_known",
    "severity",
    "matched_rules",
    "kafka_partition",
    "kafka_offset",
    "sink_mac",
    "repeat_count",
    "repeat_seqs",
    "repeat_hashes",
    "repeat_prev_hashes",
)
REPEAT_COLUMNS = 4
"""The last columns, sent only in a block that has an event standing for repeats (the
table's defaults fill them otherwise: no per-row cost for the common case)."""


_NO_LABELS: dict[str, str] = {}
_NO_RULES: list[str] = []
_NO_REPEATS: list[Any] = []
_ZERO_MAC = bytes(MAC_BYTES)


def _no_mac(partition: int, offset: int) -> bytes:
    return _ZERO_MAC


@dataclass(frozen=True)
class InsertRequest:
    table: str
    column_names: Sequence[str]
    columns: list[list[Any]]
    rows: int
    dedup_token: str
    """Same rows from the same offsets give the same token: a re-sent block is stored once."""
    holds: str = ""
    """``source:p.p.p``, the Kafka partitions whose messages the rows are (events only):
    named in the insert's query id, so that a worker gaining one of them can cancel the
    insert of a worker frozen past its session (``fencing.py``)."""


def build_event_columns(
    events: Sequence[Event], repeats: bool = True, signer: ProgressSigner | None = None
) -> list[list[Any]]:
    """Column lists in EVENT_COLUMNS order (without the repeat columns unless repeats).
    ``sink_mac`` is each message's MAC (``progress.py``), zeros without a signer."""
    actors = [e["actor"] for e in events]
    mac = signer.mac if signer is not None else _no_mac
    return [
        [e["event_id"] for e in events],
        [e["ts"] for e in events],
        [e["tenant"] for e in events],
        [e["sandbox_id"] for e in events],
        [e["seq"] for e in events],
        [e["category"] for e in events],
        [e["action"] for e in events],
        [e["level"] for e in events],
        [e["outcome"] for e in events],
        [a["user"] for a in actors],
        [a["uid"] for a in actors],
        [a["pid"] for a in actors],
        [a["ppid"] for a in actors],
        [a["process"] for a in actors],
        [a["cmdline"] for a in actors],
        [a.get("parent_process") or "" for a in actors],
        [a.get("parent_cmdline") or "" for a in actors],
        [e["object"] for e in events],
        [e["bytes"] for e in events],
        [e["attributes"] for e in events],
        [e["prev_hash"] for e in events],
        [e["hash"] for e in events],
        *_enrichment_columns(events),
        [e.get("matched_rules") or _NO_RULES for e in events],
        [e["kafka_partition"] for e in events],
        [e["kafka_offset"] for e in events],
        [mac(e["kafka_partition"], e["kafka_offset"]) for e in events],
        *(_repeat_columns(events) if repeats else ()),
    ]


ENRICHMENT_DEFAULTS = (
    ("owner", ""),
    ("environment", ""),
    ("image", ""),
    ("labels", _NO_LABELS),
    ("sandbox_known", False),
    ("severity", "low"),
)


def _enrichment_columns(events: Sequence[Event]) -> list[list[Any]]:
    """Set by the enrich stage; the defaults keep the sink usable without it."""
    try:
        return [[e[name] for e in events] for name, _ in ENRICHMENT_DEFAULTS]
    except KeyError:
        return [[e.get(name, default) for e in events] for name, default in ENRICHMENT_DEFAULTS]


def _repeat_columns(events: Sequence[Event]) -> list[list[Any]]:
    """Set by the collapse stage on an event that stands for repeats."""
    return [
        [e.get("repeat_count", 1) for e in events],
        [e.get("repeat_seqs", _NO_REPEATS) for e in events],
        [e.get("repeat_hashes", _NO_REPEATS) for e in events],
        [e.get("repeat_prev_hashes", _NO_REPEATS) for e in events],
    ]


def build_event_request(
    table: str, events: Sequence[Event], signer: ProgressSigner | None = None
) -> InsertRequest:
    """One insert of events (ordered by partition, then offset). Rows from the deferred
    topic get ``deferred`` (the table's default, false, fills it otherwise) and a token of
    their own: their offsets are another topic's, and an equal token would make
    ClickHouse drop the block as a duplicate of the events topic's."""
    repeats = any("repeat_count" in e for e in events)
    columns = build_event_columns(events, repeats, signer)
    partitions, offsets = columns[_PARTITION_COLUMN], columns[_OFFSET_COLUMN]
    names = EVENT_COLUMNS if repeats else EVENT_COLUMNS[:-REPEAT_COLUMNS]
    source = signer.source if signer is not None else "events"
    if source == "deferred":
        names = (*names, "deferred")
        columns.append([True] * len(events))
    return InsertRequest(
        table=table,
        column_names=names,
        columns=columns,
        rows=len(events),
        dedup_token=f"{source}:{offset_ranges(partitions, offsets)}:{len(events)}",
        holds=f"{source}:{'.'.join(map(str, sorted(set(partitions))))}",
    )


_PARTITION_COLUMN = EVENT_COLUMNS.index("kafka_partition")
_OFFSET_COLUMN = EVENT_COLUMNS.index("kafka_offset")


def offset_ranges(partitions: list[int], offsets: list[int]) -> str:
    """``partition@first-last`` for each partition, comma-separated.

    >>> offset_ranges([0, 0, 1, 3, 3], [5, 7, 2, 9, 8])
    '0@5-7,1@2-2,3@8-9'
    """
    if partitions != sorted(partitions):  # not the sink's order: take it apart by hand
        order = sorted(range(len(partitions)), key=partitions.__getitem__)
        partitions = [partitions[i] for i in order]
        offsets = [offsets[i] for i in order]
    ranges = []
    start, count = 0, len(partitions)
    while start < count:  # one step per partition: the lists are grouped by partition
        partition = partitions[start]
        end = bisect.bisect_right(partitions, partition, start)
        segment = offsets[start:end]
        ranges.append(f"{partition}@{min(segment)}-{max(segment)}")
        start = end
    return ",".join(ranges)


def side_request(tables: Tables, records: Records) -> InsertRequest:
    """The insert of a batch's side output (``outputs/base.py``) into its table. The token
    comes from what identifies the records (their source offsets, ids or signatures) or,
    for counts and links, from their origin: the same records re-sent are stored once."""
    items = list(records.items)
    kind = records.kind
    names: Sequence[str]
    if kind == "dead_letters":
        table, names, columns = tables.deadletter, DEADLETTER_COLUMNS, record_columns(items)
        where = ",".join(
            f"{r['source_topic']}/{r['source_partition']}@{r['source_offset']}" for r in items
        )
        token = "dlq:" + _digest(where.encode())
    elif kind == "alerts":
        table, names, columns = tables.alerts, ALERT_COLUMNS, alert_columns(items)
        token = "alerts:" + _digest("".join(a.alert_id for a in items).encode())
    elif kind == "checkpoints":
        table, names, columns = tables.checkpoints, CHECKPOINT_COLUMNS, checkpoint_columns(items)
        token = "checkpoints:" + _digest(b"".join(c.signature for c in items))
    elif kind == "rollup":
        table, names, columns = tables.rollup, ROLLUP_COLUMNS, rollup_columns(items)
        token = f"{table}:{records.origin}"
    else:
        table, names, columns = tables.links, LINK_COLUMNS, link_columns(items)
        token = f"{table}:{records.origin}"
    return InsertRequest(table, names, columns, len(items), token)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
