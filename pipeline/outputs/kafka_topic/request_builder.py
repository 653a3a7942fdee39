"""Alerts and events as Kafka messages: key tenant/sandbox (one sandbox's records stay in order on
one partition), value the shaped record as JSON (a CEF line is refused by the config)."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from pipeline.outputs.forwarding.shapes import Item, Shape


def messages(items: Sequence[Item], shape: Shape) -> list[tuple[bytes, bytes]]:
    return [(item.key, orjson.dumps(shape(item))) for item in items]


def too_large(batch: list[tuple[bytes, bytes]], limit: int) -> int | None:
    """The position of the first message over ``limit`` bytes (key, value and the
    record's overhead), or None. Checked before anything of the batch is sent, so a
    refused message does not make its batch's others be sent twice."""
    for position, (key, value) in enumerate(batch):
        if len(key) + len(value) + 128 > limit:
            return position
    return None
