"""The validate stage: a bad event is dead-lettered alone, with its reason."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from pipeline.config import ValidateConfig
from pipeline.simulate import FleetSimulator
from pipeline.stages.base import BatchContext
from pipeline.stages.validate import ValidateStage

NOW = 1_795_860_000_000


def tagged_events(n: int) -> list[dict[str, Any]]:
    events = list(FleetSimulator(2, seed=4).events(n, start_ms=NOW - 60_000))
    for offset, event in enumerate(events):
        event.update(kafka_partition=0, kafka_offset=offset)
    return events


def stage(**config: Any) -> ValidateStage:
    return ValidateStage(ValidateConfig(**config), now_ms=lambda: NOW)


def test_valid_batch_passes_whole() -> None:
    events = tagged_events(10)
    ctx = BatchContext("audit.events")
    assert stage().process(events, ctx) == events
    assert not ctx.dead


@pytest.mark.parametrize(
    ("change", "reason", "detail"),
    [
        ({"tenant": ""}, "invalid_event", "tenant: required"),
        ({"event_id": ""}, "invalid_event", "event_id: required"),
        ({"ts": NOW + 301_000}, "ts_in_future", f"ts {NOW + 301_000} is after {NOW + 300_000}"),
        ({"object": "x" * 70_000}, "oversized_field", "object: over 65536 bytes"),
        ({"object": "é" * 40_000}, "oversized_field", "object: over 65536 bytes"),
        (
            {"attributes": {str(i): "" for i in range(300)}},
            "oversized_field",
            "attributes: 300 entries (max 256)",
        ),
        (
            {"attributes": {"blob": "y" * 70_000}},
            "oversized_field",
            "attributes.blob: over 65536 bytes",
        ),
    ],
)
def test_bad_event_is_dead_lettered_and_the_rest_go_on(
    change: dict[str, Any], reason: str, detail: str
) -> None:
    events = tagged_events(10)
    events[3].update(change)
    ctx = BatchContext("audit.events")

    kept = stage().process(events, ctx)

    assert kept == events[:3] + events[4:]
    (record,) = ctx.dead.records
    assert (record["reason"], record["detail"][: len(detail)]) == (reason, detail)
    assert record["event_id"] == events[3]["event_id"]
    assert record["source_offset"] == 3
    assert orjson.loads(record["original"])["seq"] == events[3]["seq"]


def test_limits_come_from_the_config() -> None:
    events = tagged_events(3)
    events[1]["ts"] = NOW + 10_000
    ctx = BatchContext("audit.events")
    assert len(stage(max_future_s=60).process(events, ctx)) == 3
    assert len(stage(max_future_s=5).process(events, ctx)) == 2
