"""Delivering one batch to one destination, and finding what it refuses.

The destination's ``write`` retries while it is unavailable and raises ``Refused`` only
for records it will never take. A refused batch of several records is split in halves,
each delivered in order, until the records at fault stand alone: those are returned
with the reason, to be dead-lettered; the rest are delivered. One bad record costs
about 2 log2(batch) requests, not the batch.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.outputs.base import Output, Records
from pipeline.outputs.forwarding.retry import Refused
from pipeline.outputs.forwarding.shapes import Item


def deliver(output: Output, items: Sequence[Item]) -> list[tuple[int, str]]:
    """Deliver ``items``; the positions (in ``items``) of those refused, with why."""
    refused: list[tuple[int, str]] = []
    pending: list[tuple[int, int]] = [(0, len(items))] if items else []
    while pending:
        start, end = pending.pop()
        try:
            output.write(Records("forwarded", items[start:end]))
        except Refused as exc:
            if end - start == 1:
                refused.append((start, str(exc)))
            else:
                middle = (start + end) // 2
                pending += [(middle, end), (start, middle)]  # the first half first
    return refused
