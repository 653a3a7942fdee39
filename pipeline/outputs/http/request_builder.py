"""A batch of shaped records as one NDJSON body (one JSON object per line, each line
ending in a newline, as Elastic's ``_bulk`` and most collectors read it), gzip-compressed
when the destination asks for it."""

from __future__ import annotations

import gzip
from collections.abc import Iterable
from typing import Any

import orjson


def ndjson(records: Iterable[Any]) -> bytes:
    return b"".join(orjson.dumps(record) + b"\n" for record in records)


def compressed(body: bytes, use_gzip: bool) -> tuple[bytes, dict[str, str]]:
    """The body to send and its Content-Encoding header (if any)."""
    if not use_gzip:
        return body, {}
    return gzip.compress(body, compresslevel=5), {"Content-Encoding": "gzip"}
