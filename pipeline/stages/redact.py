"""Redact stage: no secret reaches storage, and no chained event is changed.

The masking itself is ``pipeline/redaction.py``. Collectors mask before they seal an
event into its chain, so a chained event arrives masked and its hash covers exactly what
is stored. Here:

* an event without a chain (``hash`` null: from ``publish``, or an SDK that does not
  chain) is masked in place, as at the edge;
* a chained event that would still change (a collector with other or no redact rules, or
  a secret its rules missed) is not masked here, since that would break its chain and
  exempt it from ``auditpipe verify``: it is dead-lettered as ``secret_after_chain``,
  stored there with its secrets masked, for the operator to align the collector's rules
  and replay it.

>>> from pipeline.config import RedactConfig
>>> from pipeline.stages.base import BatchContext
>>> stage = RedactStage(RedactConfig())
>>> plain = {"event_id": "e1", "actor": {"cmdline": "mysql password=hunter2"}, "object": "",
...          "attributes": {}, "hash": None, "kafka_partition": 0, "kafka_offset": 1}
>>> chained = {**plain, "event_id": "e2", "actor": dict(plain["actor"]), "attributes": {},
...            "hash": b"h" * 32, "prev_hash": b"p" * 32}
>>> ctx = BatchContext("audit.events")
>>> [e["actor"]["cmdline"] for e in stage.process([plain, chained], ctx)]
['mysql password=[REDACTED:secret_param]']
>>> ctx.dead.records[0]["reason"], ctx.dead.records[0]["event_id"]
('secret_after_chain', 'e2')
"""

from __future__ import annotations

from pipeline.config import RedactConfig
from pipeline.redaction import Redactor
from pipeline.schema.deadletter import Provenance
from pipeline.schema.event import Event
from pipeline.stages.base import BatchContext, StageBase


class RedactStage(StageBase):
    name = "redact"

    def __init__(self, config: RedactConfig, key: bytes | None = None) -> None:
        self.config = config
        self.redactor = Redactor(config, key)

    def process(self, events: list[Event], ctx: BatchContext) -> list[Event]:
        if not self.config.enabled:
            return events
        mask = self.redactor.mask
        refused: list[Event] = []
        for event in events:
            if event.get("hash") is None:
                mask(event)
            elif self.redactor.would_change(event):
                refused.append(event)
        redactions = self.redactor.redactions
        for rule, n in redactions.items():
            ctx.count("redactions", n, rule=rule)
        redactions.clear()
        if not refused:
            return events
        for event in refused:
            where = Provenance(ctx.source_topic, event["kafka_partition"], event["kafka_offset"],
                               None)  # fmt: skip
            ctx.dead.event(
                where,
                "secret_after_chain",
                "a chained event still holds a secret the redact rules mask: masking it now "
                "would break its chain (align the collector's redact rules, then replay)",
                event,
            )
        kept = {id(e) for e in refused}
        return [e for e in events if id(e) not in kept]

    def masked(self, event: Event) -> Event:
        """A copy of the event with its secrets masked (dead letters store it)."""
        return self.redactor.masked(event)
