"""The validate stage: an event without tenant, sandbox or id is dead-lettered alone."""

from __future__ import annotations

import orjson

from pipeline.simulate import FleetSimulator
from pipeline.stages.base import BatchContext
from pipeline.stages.validate import ValidateStage


def tagged_events(n: int) -> list[dict[str, object]]:
    events = list(FleetSimulator(2, seed=4).events(n))
    for offset, event in enumerate(events):
        event.update(kafka_partition=0, kafka_offset=offset)
    return events


def test_valid_batch_passes_unchanged() -> None:
    events = tagged_events(10)
    ctx = BatchContext("audit.events")
    assert ValidateStage().process(events, ctx) is events
    assert not ctx.dead


def test_invalid_event_is_dead_lettered_and_the_rest_go_on() -> None:
    events = tagged_events(10)
    events[3]["tenant"] = ""
    ctx = BatchContext("audit.events")

    kept = ValidateStage().process(events, ctx)

    assert len(kept) == 9
    assert events[3] not in kept
    (record,) = ctx.dead.records
    assert record["reason"] == "invalid_event"
    assert record["detail"] == "tenant: required"
    assert record["event_id"] == events[3]["event_id"]
    assert record["source_offset"] == 3
    assert orjson.loads(record["original"])["seq"] == events[3]["seq"]
