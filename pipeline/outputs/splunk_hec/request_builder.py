"""A batch as HEC's event endpoint takes it: JSON objects one after the other (not an
array), each with ``time`` (epoch seconds, millisecond precision), ``host`` (the
sandbox), ``source`` (``auditpipe``), ``sourcetype``, ``index`` when set, ``event`` (the
shaped record) and ``fields`` (indexed fields a search can filter on cheaply: tenant,
and rule and severity for an alert, category, action and level for an event)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import orjson

from pipeline.outputs.forwarding.shapes import Item


def events_body(
    items: Iterable[Item],
    shape: Callable[[Item], Any],
    sourcetype: str,
    index: str | None,
) -> bytes:
    parts = []
    for item in items:
        record: dict[str, Any] = {
            "time": round(item.ts_ms / 1000, 3),
            "host": item.sandbox_id,
            "source": "auditpipe",
            "sourcetype": sourcetype,
            "event": shape(item),
            "fields": item.fields,
        }
        if index:
            record["index"] = index
        parts.append(orjson.dumps(record))
    return b"\n".join(parts)
