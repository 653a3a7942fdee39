"""A batch as HEC's event endpoint takes it: JSON objects one after the other (not an
array), each with ``time`` (epoch seconds, millisecond precision), ``host`` (the
sandbox), ``source`` (``auditpipe``), ``sourcetype``, ``index`` when set, ``event`` (the
shaped alert) and ``fields`` (indexed fields a search can filter on cheaply: tenant,
rule, severity)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import orjson

from pipeline.rules.alerts import Alert


def events_body(
    alerts: Iterable[Alert],
    shape: Callable[[Alert], Any],
    sourcetype: str,
    index: str | None,
) -> bytes:
    parts = []
    for alert in alerts:
        record: dict[str, Any] = {
            "time": round(alert.last_ts / 1000, 3),
            "host": alert.sandbox_id,
            "source": "auditpipe",
            "sourcetype": sourcetype,
            "event": shape(alert),
            "fields": {
                "tenant": alert.tenant,
                "rule_id": alert.rule_id,
                "severity": alert.severity,
            },
        }
        if index:
            record["index"] = index
        parts.append(orjson.dumps(record))
    return b"\n".join(parts)
