"""Collector sources: where events come from, each mapped to audit event v1.

Each format module has a parser: ``feed(line)`` returns the events that line completes
(a format may need several lines for one event) and raises ``ParseError`` for a line it
cannot read. The original fields are kept under ``attributes``.
"""

from __future__ import annotations


class ParseError(ValueError):
    """A line that cannot be read; the collector counts it, reports it and goes on."""
