"""The retry decision: which failed ClickHouse calls may succeed if tried again.

An insert that failed for its *data* (a value its column cannot hold, a type the table
does not have) fails the same way on every retry: retried forever, it would hold its
partition, and so every tenant's audit trail, until someone edits Kafka by hand. Such a
failure is ``REJECT``: the sink splits the block and dead-letters the rows at fault.
Everything else is ``RETRY``: the network, an unavailable or overloaded server
(``TOO_MANY_PARTS``, memory limits, timeouts), and also errors an operator fixes (a wrong
password, a missing grant or table), because dead-lettering every row for a
configuration mistake would empty the audit trail into the dead letters.

>>> from clickhouse_connect.driver.exceptions import DatabaseError, DataError, OperationalError
>>> decide(DataError("Unable to create native array for column actor_uid"))
'reject'
>>> decide(DatabaseError("Code: 53. DB::Exception: Type mismatch", code=53))
'reject'
>>> decide(DatabaseError("Code: 252. Too many parts", code=252))
'retry'
>>> decide(OperationalError("connection refused")), decide(OverflowError("int too big"))
('retry', 'reject')
"""

from __future__ import annotations

import struct
from typing import Literal

from clickhouse_connect.driver.exceptions import DatabaseError, DataError

Decision = Literal["retry", "reject"]
RETRY: Decision = "retry"
REJECT: Decision = "reject"

DATA_ERROR_CODES = frozenset(
    {
        6,  # CANNOT_PARSE_TEXT
        8,  # THERE_IS_NO_COLUMN
        10,  # NOT_FOUND_COLUMN_IN_BLOCK
        16,  # NO_SUCH_COLUMN_IN_TABLE
        27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
        41,  # CANNOT_PARSE_DATETIME
        43,  # ILLEGAL_TYPE_OF_ARGUMENT
        53,  # TYPE_MISMATCH
        69,  # ARGUMENT_OUT_OF_BOUND
        70,  # CANNOT_CONVERT_TYPE
        72,  # CANNOT_PARSE_NUMBER
        117,  # INCORRECT_DATA
        131,  # TOO_LARGE_STRING_SIZE
        190,  # SIZES_OF_ARRAYS_DONT_MATCH
        321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
        349,  # CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
    }
)
"""Server error codes that say the block's data can never be inserted as it is."""

_CLIENT_DATA_ERRORS = (DataError, OverflowError, struct.error, TypeError, ValueError)
"""Raised while the client serializes the columns: a value its type cannot hold."""


def decide(exc: BaseException) -> Decision:
    """``reject`` for a failure of the data itself, ``retry`` for everything else."""
    if isinstance(exc, _CLIENT_DATA_ERRORS):
        return REJECT
    if isinstance(exc, DatabaseError) and getattr(exc, "code", None) in DATA_ERROR_CODES:
        return REJECT
    return RETRY


class RowsRejected(Exception):
    """ClickHouse refused an insert for its data; retrying cannot help."""

    def __init__(self, what: str, cause: BaseException) -> None:
        super().__init__(f"{what}: {short(cause)}")
        self.cause = cause


def short(exc: BaseException) -> str:
    """The error's type and first line, at most 300 characters (for logs and dead letters)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]
