"""What a destination's loop sends: events through the worker's validate and redact
stages (the store's view, never the collector's bytes), filters counted, alerts read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.config import ForwardDestination, Settings
from pipeline.forward.sorting import sorter_for
from pipeline.outputs.kafka.publish import ALERT_SCHEMA
from pipeline.schema.codec import AvroCodec
from pipeline.schema.registry import SchemaRegistry
from pipeline.sim.simulate import FleetSimulator
from tests.outputs.alerts_for_tests import alerts

CODEC = AvroCodec(SchemaRegistry.load())
SECRET = "Sup3r-s3cret-Pw-9f2c"


@dataclass
class Record:
    """What aiokafka's consumer hands over, as far as the sorter reads it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int = 0


def events_message(offset: int, events: list[dict[str, Any]]) -> Record:
    value = CODEC.encode(
        "audit_event_batch", {"sandbox_id": "sb", "collector": "t", "sent_at": 0, "events": events}
    )
    return Record("audit.events", 0, offset, b"sb", value)


def destination(**changed: Any) -> ForwardDestination:
    return ForwardDestination(
        **({"name": "siem", "type": "http", "url": "http://127.0.0.1:9/"} | changed)
    )


def fleet(n: int) -> list[dict[str, Any]]:
    return list(FleetSimulator(3, seed=4).events(n))


def test_events_reach_the_destination_redacted_and_each_once() -> None:
    events = fleet(60)
    events[5]["actor"]["cmdline"] = f"psql postgres://app:{SECRET}@db.internal/prod"
    events[6]["attributes"]["note"] = f"PGPASSWORD={SECRET} pg_dump prod"
    sorter = sorter_for(Settings(), destination(records="events"), CODEC)
    taken = sorter.sort([events_message(10, events[:30]), events_message(11, events[30:])])
    assert [item.uid for item in taken.items] == [e["event_id"] for e in events]
    assert SECRET not in repr([item.record for item in taken.items])
    assert "db.internal" in taken.items[5].record["actor"]["cmdline"]  # the evidence stays
    assert [w.offset for w in taken.where[:31]] == [10] * 30 + [11]
    assert taken.filtered == taken.invalid == 0 and not taken.dead


def test_events_filtered_by_category_level_and_tenant_are_counted_not_sent() -> None:
    events = fleet(300)
    dest = destination(
        records="events",
        categories=["process", "config", "data_transfer"],
        min_level="notice",
        tenants=["globex", "initech"],
    )
    taken = sorter_for(Settings(), dest, CODEC).sort([events_message(0, events)])
    wanted = [
        e
        for e in events
        if e["category"] in ("process", "config", "data_transfer")
        and e["level"] in ("notice", "warning", "error", "critical")
        and e["tenant"] in ("globex", "initech")
    ]
    assert wanted, "the fleet has no event the filters keep: the test shows nothing"
    assert [item.uid for item in taken.items] == [e["event_id"] for e in wanted]
    assert taken.filtered == len(events) - len(wanted)


def test_an_event_the_worker_refuses_is_counted_invalid_and_never_sent() -> None:
    events = fleet(5)
    events[2]["tenant"] = ""
    garbage = Record("audit.events", 0, 9, None, b"\x00\x01 not avro")
    taken = sorter_for(Settings(), destination(records="events"), CODEC).sort(
        [events_message(8, events), garbage]
    )
    assert [item.uid for item in taken.items] == [
        e["event_id"] for i, e in enumerate(events) if i != 2
    ]
    assert taken.invalid == 2  # the refused event and the undecodable message
    assert not taken.dead  # the worker dead-letters those; the forwarder only counts
    assert taken.ends  # the batch's offsets are still committed


def test_alerts_below_the_minimum_severity_are_filtered_and_garbage_dead_lettered() -> None:
    sent = alerts(40)
    records = [
        Record("audit.alerts", 0, i, a.key, CODEC.encode(ALERT_SCHEMA, a.record()))
        for i, a in enumerate(sent)
    ]
    records.append(Record("audit.alerts", 0, 40, None, b"\x00not an alert"))
    taken = sorter_for(Settings(), destination(min_severity="high"), CODEC).sort(records)
    severe = [a.alert_id for a in sent if a.severity in ("high", "critical")]
    assert [item.uid for item in taken.items] == severe
    assert taken.filtered == len(sent) - len(severe)
    assert [r["reason"] for r in taken.dead.records] == ["undecodable_alert"]
