"""Validate stage: events that Avro accepts but the pipeline must not store.

Avro checks types; this checks meaning. Each failing event is dead-lettered alone, with
its reason, and the rest of its batch goes on:

* ``invalid_event``: an empty ``tenant``, ``sandbox_id``, ``event_id`` or ``action``;
* ``ts_in_future``: ``ts`` more than ``validation.max_future_s`` ahead of the worker's clock
  (a broken clock, or an attempt to hide events from time-range queries);
* ``oversized_field``: a string longer than ``validation.max_field_bytes``, or
  ``attributes`` with more than ``validation.max_attributes`` entries.

>>> from pipeline.config import ValidateConfig
>>> stage = ValidateStage(ValidateConfig(), now_ms=lambda: 1_000_000_000_000)
>>> ctx = BatchContext("audit.events")
>>> event = {"event_id": "e1", "tenant": "", "sandbox_id": "s", "action": "exec", "ts": 0,
...          "actor": {"cmdline": "", "process": "", "user": ""}, "object": "",
...          "attributes": {}, "kafka_partition": 0, "kafka_offset": 9}
>>> stage.process([event], ctx), ctx.dead.records[0]["reason"], ctx.dead.records[0]["detail"]
([], 'invalid_event', 'tenant: required')
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pipeline.config import ValidateConfig
from pipeline.deadletter import Provenance
from pipeline.schema.event import Event
from pipeline.stages.base import BatchContext

REQUIRED = ("event_id", "tenant", "sandbox_id", "action")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class ValidateStage:
    name = "validate"

    def __init__(self, config: ValidateConfig, now_ms: Callable[[], int] = _now_ms) -> None:
        self.config = config
        self.now_ms = now_ms

    def process(self, events: list[Event], ctx: BatchContext) -> list[Event]:
        latest_ts = self.now_ms() + int(self.config.max_future_s * 1000)
        limit = self.config.max_field_bytes
        max_attributes = self.config.max_attributes
        kept: list[Event] = []
        for event in events:
            problem = _problem(event, latest_ts, limit, max_attributes)
            if problem is None:
                kept.append(event)
            else:
                where = Provenance(
                    ctx.source_topic, event["kafka_partition"], event["kafka_offset"], None
                )
                ctx.dead.event(where, problem[0], problem[1], event)
        return kept


def _problem(
    event: Event, latest_ts: int, limit: int, max_attributes: int
) -> tuple[str, str] | None:
    """(reason, detail) of the first problem, or None. Cheap checks first: this runs per event."""
    if not (event["tenant"] and event["sandbox_id"] and event["event_id"] and event["action"]):
        missing = next(name for name in REQUIRED if not event[name])
        return "invalid_event", f"{missing}: required"
    if event["ts"] > latest_ts:
        return "ts_in_future", f"ts {event['ts']} is after {latest_ts} (now + allowed skew)"
    actor = event["actor"]
    attributes = event["attributes"]
    # A character is at most 4 bytes: only long strings need their bytes counted.
    for name, value in (("actor.cmdline", actor["cmdline"]), ("object", event["object"])):
        if len(value) * 4 > limit and len(value.encode()) > limit:
            return "oversized_field", f"{name}: over {limit} bytes"
    if len(attributes) > max_attributes:
        return "oversized_field", f"attributes: {len(attributes)} entries (max {max_attributes})"
    for key, value in attributes.items():
        if len(value) * 4 > limit and len(value.encode()) > limit:
            return "oversized_field", f"attributes.{key}: over {limit} bytes"
    return None
