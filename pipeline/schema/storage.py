"""What the events table can hold: the value range of each integer and time column.

Avro allows any long where ClickHouse stores ``UInt32`` (uid, pid, ppid), ``UInt64``
(seq, bytes) or ``DateTime64(3)`` (ts). A value that fits the schema but not its column
can never be inserted: the validate stage dead-letters it with its reason, so it never
reaches the sink, where it would fail every retry of its block. The table below is
checked against the real table's column types by ``tests/integration/test_storage.py``,
so a migration that changes a column type fails a test until this changes too.

>>> INTEGER_COLUMNS["actor.uid"]
(0, 4294967295)
>>> out_of_range("actor.pid", 2**32)
'actor.pid: 4294967296 is outside UInt32 (0..4294967295)'
>>> out_of_range("seq", -1), out_of_range("bytes", 7)
('seq: -1 is outside UInt64 (0..18446744073709551615)', None)
"""

from __future__ import annotations

UINT32 = (0, 2**32 - 1)
UINT64 = (0, 2**64 - 1)

INTEGER_COLUMNS: dict[str, tuple[int, int]] = {
    "seq": UINT64,
    "bytes": UINT64,
    "actor.uid": UINT32,
    "actor.pid": UINT32,
    "actor.ppid": UINT32,
}
"""Event field -> (least, greatest) value its column stores."""

COLUMN_TYPES: dict[str, str] = {
    "seq": "UInt64",
    "bytes": "Nullable(UInt64)",
    "actor.uid": "Nullable(UInt32)",
    "actor.pid": "Nullable(UInt32)",
    "actor.ppid": "Nullable(UInt32)",
    "ts": "DateTime64(3, 'UTC')",
}
"""Event field -> the ClickHouse type of its column in ``events`` (the test's reference)."""

TS_RANGE_MS = (-2_208_988_800_000, 10_413_791_999_999)
"""DateTime64(3)'s range, 1900-01-01 to 2299-12-31 23:59:59.999 UTC, in epoch ms."""


def out_of_range(field: str, value: int | None) -> str | None:
    """The problem with a value of an integer column, or None when it fits."""
    if value is None:
        return None
    low, high = INTEGER_COLUMNS[field]
    if low <= value <= high:
        return None
    kind = "UInt32" if high == UINT32[1] else "UInt64"
    return f"{field}: {value} is outside {kind} ({low}..{high})"
