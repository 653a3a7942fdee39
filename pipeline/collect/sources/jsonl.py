"""JSON lines with the schema's field names (the format of `auditpipe publish`).

A collector runs beside one sandbox, and what that sandbox writes into its audit file is
untrusted: by default the collector *pins* its tenant and sandbox (``collect.tenant`` and
``collect.sandbox_id``). A line that leaves them out gets the collector's; a line that
names another tenant or sandbox is rejected (reported with its line number, counted as a
bad line), so a sandbox cannot inject events into another tenant's view or fork another
sandbox's chain. A trusted relay that gathers several sandboxes' lines sets
``collect.trust_source_identity`` to keep each line's own values.

>>> parser = JsonLinesParser(tenant="acme", sandbox_id="sb-1")
>>> parser.feed(b'{"category": "file", "action": "read"}')[0]["tenant"]
'acme'
>>> parser.feed(b'{"tenant": "globex", "category": "file", "action": "read"}')
... # doctest: +ELLIPSIS
Traceback (most recent call last):
...
pipeline.collect.sources.ParseError: tenant: 'globex' is not this collector's ('acme'); ...
"""

from __future__ import annotations

import time

from pipeline.collect.sources import BLANK, ParseError, load_json_line
from pipeline.schema.event import Event, InvalidEvent, normalize_event


class JsonLinesParser:
    name = "jsonl"

    def __init__(self, *, tenant: str, sandbox_id: str, trust_identity: bool = False) -> None:
        self.tenant = tenant
        self.sandbox_id = sandbox_id
        self.trust_identity = trust_identity

    held_since = None
    """One line is one event: nothing is ever held back."""

    def feed(self, line: bytes) -> list[Event]:
        obj = load_json_line(line)
        if obj is BLANK:
            return []
        if isinstance(obj, dict):
            for field, pinned in (("tenant", self.tenant), ("sandbox_id", self.sandbox_id)):
                claimed = obj.setdefault(field, pinned)
                if claimed != pinned and not self.trust_identity:
                    raise ParseError(
                        f"{field}: {claimed!r} is not this collector's ({pinned!r}); "
                        "set collect.trust_source_identity for a trusted relay"
                    )
        try:
            event = normalize_event(obj, now_ms=time.time_ns() // 1_000_000)
        except InvalidEvent as exc:
            raise ParseError(str(exc)) from None
        return [event]

    def finish(self) -> list[Event]:
        return []
