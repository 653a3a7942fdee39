"""Collector sources: where events come from, each mapped to audit event v1.

Each format module has a parser: ``feed(line)`` returns the events that line completes
(a format may need several lines for one event) and raises ``ParseError`` for a line it
cannot read. The original fields are kept under ``attributes``.
"""

from __future__ import annotations

from typing import Any

import orjson


class ParseError(ValueError):
    """A line that cannot be read; the collector counts it, reports it and goes on."""


BLANK: Any = object()
"""What load_json_line returns for a blank line (a JSON null is not blank)."""


def load_json_line(line: bytes) -> Any:
    """The JSON value of a line, BLANK for a blank line; ParseError when it is not JSON."""
    if not line.strip():
        return BLANK
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ParseError(f"invalid JSON: {exc}") from None
