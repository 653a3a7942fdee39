"""JSON lines with the schema's field names (the format of `auditpipe publish`)."""

from __future__ import annotations

import time

from pipeline.collect.sources import BLANK, ParseError, load_json_line
from pipeline.schema.event import Event, InvalidEvent, normalize_event


class JsonLinesParser:
    name = "jsonl"

    def __init__(self, *, tenant: str, sandbox_id: str) -> None:
        self.tenant = tenant
        self.sandbox_id = sandbox_id

    pending = False
    """One line is one event: nothing is ever held back."""

    def feed(self, line: bytes) -> list[Event]:
        obj = load_json_line(line)
        if obj is BLANK:
            return []
        if isinstance(obj, dict):
            obj.setdefault("tenant", self.tenant)
            obj.setdefault("sandbox_id", self.sandbox_id)
        try:
            event = normalize_event(obj, now_ms=time.time_ns() // 1_000_000)
        except InvalidEvent as exc:
            raise ParseError(str(exc)) from None
        return [event]

    def finish(self) -> list[Event]:
        return []
