"""Reading alerts back from their topic: Avro (each message names its schema) or JSON,
whichever the worker writes (``rules.alert_format``)."""

from __future__ import annotations

from typing import Any

import orjson

from pipeline.rules.alerts import Alert
from pipeline.schema.codec import AvroCodec, DecodeError
from pipeline.siem.common import millis

ALERT_FIELDS = frozenset(Alert.__dataclass_fields__)


def decode_alert(codec: AvroCodec, value: bytes) -> dict[str, Any] | None:
    """An alert record from a message value (Avro or JSON); None if it is neither."""
    if value[:1] == b"{":
        try:
            record = orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
        return record if isinstance(record, dict) else None
    try:
        decoded = codec.decode(value)
    except DecodeError:
        return None
    return dict(decoded.record) if decoded.writer.name == "alert" else None


def as_alert(record: dict[str, Any]) -> Alert:
    """The record as an ``Alert``; raises ValueError (naming the field) when it is not one."""
    missing = ALERT_FIELDS - record.keys()
    if missing:
        raise ValueError(f"not an alert: missing {', '.join(sorted(missing))}")
    try:
        return Alert(
            alert_id=str(record["alert_id"]),
            rule_id=str(record["rule_id"]),
            title=str(record["title"]),
            severity=str(record["severity"]),
            tags=tuple(str(t) for t in record["tags"]),
            tenant=str(record["tenant"]),
            sandbox_id=str(record["sandbox_id"]),
            first_ts=millis(record["first_ts"]),
            last_ts=millis(record["last_ts"]),
            count=int(record["count"]),
            evidence=tuple(str(e) for e in record["evidence"]),
        )
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"not an alert: {exc}") from None
