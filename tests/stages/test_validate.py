"""The validate stage: a bad event is dead-lettered alone, with its reason."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from pipeline.config import ValidateConfig
from pipeline.sim.simulate import FleetSimulator
from pipeline.stages.base import BatchContext
from pipeline.stages.validate import ValidateStage
from tests.fakes import actor

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
            {"actor": actor(parent_cmdline="p" * 70_000)},
            "oversized_field",
            "actor.parent_cmdline: over 65536 bytes",
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


def _set(event: dict[str, Any], dotted: str, value: Any) -> None:
    head, _, name = dotted.partition(".")
    if name:
        event[head][name] = value
    else:
        event[head] = value


@pytest.mark.parametrize(
    ("field", "bad", "edge"),
    [
        ("actor.uid", 2**32, 2**32 - 1),
        ("actor.uid", -1, 0),
        ("actor.pid", 2**32, 2**32 - 1),
        ("actor.ppid", -5, 0),
        ("seq", -1, 0),
        ("bytes", -1, 0),
        ("bytes", -(2**63), 2**63 - 1),
    ],
)
def test_integers_beyond_their_column_are_dead_lettered_and_edges_pass(
    field: str, bad: int, edge: int
) -> None:
    """A value Avro accepts (any long) but the column cannot hold (UInt32, UInt64)."""
    events = tagged_events(6)
    _set(events[1], field, bad)
    _set(events[4], field, edge)
    ctx = BatchContext("audit.events")

    kept = stage().process(events, ctx)

    assert kept == [events[0], *events[2:]]
    (record,) = ctx.dead.records
    assert record["reason"] == "out_of_range"
    assert record["detail"].startswith(f"{field}: {bad} is outside UInt")


def test_every_out_of_range_value_in_one_batch_between_good_events() -> None:
    events = tagged_events(12)
    bad = {1: ("actor.uid", 2**32), 3: ("actor.pid", 2**40), 5: ("actor.ppid", -1),
           7: ("seq", -3), 9: ("bytes", -1), 11: ("ts", NOW - 40 * 86_400_000)}  # fmt: skip
    for index, (field, value) in bad.items():
        _set(events[index], field, value)
    ctx = BatchContext("audit.events")

    kept = stage().process(events, ctx)

    assert kept == [e for i, e in enumerate(events) if i not in bad]
    assert [r["source_offset"] for r in ctx.dead.records] == sorted(bad)
    assert ctx.dead.by_reason == {"out_of_range": 5, "ts_too_old": 1}


def test_old_events_are_dead_lettered_unless_the_tenant_may_backfill() -> None:
    events = tagged_events(4)
    year_ago = NOW - 365 * 86_400_000
    for event in events:
        event["ts"] = year_ago
    events[0]["tenant"] = events[1]["tenant"] = "archive"
    events[1]["ts"] = NOW - 800 * 86_400_000  # older than even the backfill allows

    ctx = BatchContext("audit.events")
    assert stage().process(list(events), ctx) == []
    assert ctx.dead.by_reason == {"ts_too_old": 4}

    ctx = BatchContext("audit.events")
    kept = stage(backfill_tenants={"archive": 400 * 86_400}).process(list(events), ctx)
    assert kept == [events[0]]
    assert ctx.dead.by_reason == {"ts_too_old": 3}

    ctx = BatchContext("audit.events")
    kept = stage(backfill_tenants={"*": 400 * 86_400}).process(list(events), ctx)
    assert kept == [events[0], events[2], events[3]]


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"tenant": "t" * 2000}, "tenant: over 1024 bytes"),
        ({"sandbox_id": "s" * 2000}, "sandbox_id: over 1024 bytes"),
        ({"event_id": "é" * 600}, "event_id: over 1024 bytes"),
        ({"action": "a" * 5000}, "action: over 1024 bytes"),
        ({"attributes": {"k" * 2000: "v"}}, "attributes: a key over 1024 bytes"),
        (
            {"attributes": {f"k{i}": "v" * 60_000 for i in range(20)}},
            "event: over 1048576 bytes of text",
        ),
    ],
)
def test_oversized_ids_keys_and_events(change: dict[str, Any], detail: str) -> None:
    events = tagged_events(3)
    events[1].update(change)
    ctx = BatchContext("audit.events")
    assert stage().process(events, ctx) == [events[0], events[2]]
    assert ctx.dead.records[0]["detail"] == detail


def test_actor_names_are_bounded() -> None:
    events = tagged_events(2)
    events[0]["actor"]["user"] = "u" * 4096
    ctx = BatchContext("audit.events")
    assert stage().process(events, ctx) == [events[1]]
    assert ctx.dead.records[0]["detail"] == "actor.user: over 1024 bytes"
