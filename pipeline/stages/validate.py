"""Validate stage: events that Avro accepts but the pipeline cannot store.

Avro checks types; this checks meaning: an empty tenant, sandbox_id or event_id.
Such an event is dead-lettered alone (reason ``invalid_event``); its batch goes on.
"""

from __future__ import annotations

from pipeline.deadletter import Provenance
from pipeline.schema.event import Event
from pipeline.stages.base import BatchContext

REQUIRED = ("event_id", "tenant", "sandbox_id", "action")


class ValidateStage:
    name = "validate"

    def process(self, events: list[Event], ctx: BatchContext) -> list[Event]:
        if all(e["tenant"] and e["sandbox_id"] and e["event_id"] and e["action"] for e in events):
            return events  # the common case: one pass, no copy
        kept = []
        for event in events:
            missing = [name for name in REQUIRED if not event[name]]
            if missing:
                where = Provenance(
                    ctx.source_topic, event["kafka_partition"], event["kafka_offset"], None
                )
                ctx.dead.event(where, "invalid_event", f"{missing[0]}: required", event)
            else:
                kept.append(event)
        return kept
