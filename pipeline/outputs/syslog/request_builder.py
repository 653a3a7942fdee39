"""RFC 5424 messages and their framing.

``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA MSG``: facility 13
(log audit), severity from the alert's (critical 2, high 3, medium 4, low 5) or the
event's level (critical 2, error 3, warning 4, notice 5, info 6, debug 7), the
timestamp the alert's last event time (or the event's), HOSTNAME the sandbox id,
APP-NAME ``auditpipe``, MSGID the rule id (an event: category:action), no structured
data (``-``), and MSG the record: a CEF line or one JSON object. Header fields are
printable US-ASCII without spaces, at most their RFC lengths (255, 48, 128, 32): a
sandbox id or rule id outside that is replaced by ``-`` or cut, never allowed to shift
the fields after it. The MSG is UTF-8 with its BOM, as the RFC asks of UTF-8 messages.

Over TCP and TLS each message is framed by octet counting, ``LEN SP MESSAGE``, so a
line break inside a record cannot split it; over UDP each is one datagram.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import orjson

from pipeline.outputs.forwarding.shapes import Item

FACILITY_LOG_AUDIT = 13
SEVERITY = {
    "critical": 2,
    "high": 3,
    "error": 3,
    "medium": 4,
    "warning": 4,
    "low": 5,
    "notice": 5,
    "info": 6,
    "debug": 7,
}
_PRINTUSASCII = re.compile(r"[^\x21-\x7e]")
BOM = b"\xef\xbb\xbf"
UDP_MAX = 65_507
"""The largest UDP payload over IPv4; a longer message is cut (RFC 5426 allows it)."""


def _header_field(value: str, limit: int) -> str:
    clean = _PRINTUSASCII.sub("_", value)[:limit]
    return clean or "-"


def message(item: Item, shaped: Any) -> bytes:
    """One RFC 5424 message (without framing) for an item shaped as ``shaped``."""
    pri = FACILITY_LOG_AUDIT * 8 + SEVERITY.get(item.severity, 5)
    stamp = datetime.fromtimestamp(item.ts_ms / 1000, UTC).isoformat(timespec="milliseconds")
    header = " ".join(
        (
            f"<{pri}>1",
            stamp.replace("+00:00", "Z"),
            _header_field(item.sandbox_id, 255),
            "auditpipe",
            "-",
            _header_field(item.label, 32),
            "-",
        )
    )
    body = shaped.encode() if isinstance(shaped, str) else orjson.dumps(shaped)
    return header.encode() + b" " + BOM + body


def octet_counted(messages: list[bytes]) -> bytes:
    """RFC 6587 octet counting: each message as ``LEN SP MESSAGE``."""
    return b"".join(b"%d %s" % (len(m), m) for m in messages)
