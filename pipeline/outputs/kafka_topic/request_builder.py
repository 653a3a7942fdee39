"""Alerts as Kafka messages: key tenant/sandbox (one sandbox's alerts stay in order on
one partition), value the shaped record as JSON (a CEF line is refused by the config)."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from pipeline.outputs.forwarding.shapes import Shape
from pipeline.rules.alerts import Alert


def messages(alerts: Sequence[Alert], shape: Shape) -> list[tuple[bytes, bytes]]:
    return [(alert.key, orjson.dumps(shape(alert))) for alert in alerts]


def too_large(batch: list[tuple[bytes, bytes]], limit: int) -> int | None:
    """The position of the first message over ``limit`` bytes (key, value and the
    record's overhead), or None. Checked before anything of the batch is sent, so a
    refused message does not make its batch's others be sent twice."""
    for position, (key, value) in enumerate(batch):
        if len(key) + len(value) + 128 > limit:
            return position
    return None
