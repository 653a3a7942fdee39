"""Sorting one batch of messages read by a destination's loop: what goes to the
destination (as ``Item``s), what its filters leave out (counted), what cannot be read.

Alerts (``records: alerts``) come from the alerts topic, Avro or JSON; one that cannot
be read is dead-lettered (``undecodable_alert``): nothing else reads that topic with
the worker's checks.

Events (``records: events``) come from the events topic and go through the worker's own
decode, validate and redact stages first, with the worker's redaction key, so a SIEM
receives an event exactly as the store keeps it (secrets masked the same way), never the
collector's raw bytes. What those stages refuse is the worker's to dead-letter (it reads
the same messages): the forwarder counts it (``invalid``) and sends nothing of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, get_args

import orjson

from pipeline.config import ForwardDestination, Settings
from pipeline.forward.source import as_alert, decode_alert
from pipeline.outputs.forwarding.shapes import Item, from_alert, from_event
from pipeline.redaction import redaction_key
from pipeline.rules.language import SEVERITIES
from pipeline.schema.codec import AvroCodec
from pipeline.schema.deadletter import DeadLetters, Provenance
from pipeline.schema.vocabulary import Level
from pipeline.stages.base import BatchContext
from pipeline.stages.decode import DecodeLimits, RawMessage, decode_messages
from pipeline.stages.redact import RedactStage
from pipeline.stages.validate import ValidateStage

LEVELS: tuple[str, ...] = get_args(Level)


@dataclass
class Taken:
    """One batch read from the topic, sorted out."""

    items: list[Item] = field(default_factory=list)
    where: list[Provenance] = field(default_factory=list)
    originals: list[bytes] = field(default_factory=list)
    """What a dead letter of each item holds (an event: its redacted JSON)."""
    filtered: int = 0
    invalid: int = 0
    dead: DeadLetters = field(default_factory=DeadLetters)
    ends: dict[Any, int] = field(default_factory=dict)
    """TopicPartition -> the offset to commit once the batch is done."""

    def keep(self, item: Item, where: Provenance, original: bytes) -> None:
        self.items.append(item)
        self.where.append(where)
        self.originals.append(original)


def _ends(records: list[Any]) -> dict[Any, int]:
    from aiokafka import TopicPartition

    ends: dict[Any, int] = {}
    for record in records:
        tp = TopicPartition(record.topic, record.partition)
        ends[tp] = max(ends.get(tp, 0), record.offset + 1)
    return ends


class AlertSorter:
    def __init__(self, settings: Settings, dest: ForwardDestination, codec: AvroCodec) -> None:
        self.topic = settings.kafka.topic_alerts
        self.codec = codec
        self.minimum = SEVERITIES.index(dest.min_severity)
        self.tenants = frozenset(dest.tenants)

    def sort(self, records: list[Any]) -> Taken:
        taken = Taken(ends=_ends(records))
        for record in records:
            where = Provenance(record.topic, record.partition, record.offset, record.key)
            value = record.value or b""
            decoded = decode_alert(self.codec, value)
            try:
                alert = as_alert(decoded) if decoded is not None else None
            except ValueError as exc:
                taken.dead.message(where, "undecodable_alert", str(exc), value)
                continue
            if alert is None:
                taken.dead.message(
                    where, "undecodable_alert", "neither an Avro alert nor JSON", value
                )
            elif (self.tenants and alert.tenant not in self.tenants) or (
                alert.severity in SEVERITIES and SEVERITIES.index(alert.severity) < self.minimum
            ):
                taken.filtered += 1
            else:
                taken.keep(from_alert(alert), where, value)
        return taken


class EventSorter:
    def __init__(self, settings: Settings, dest: ForwardDestination, codec: AvroCodec) -> None:
        self.topic = settings.kafka.topic_events
        self.codec = codec
        self.limits = DecodeLimits(
            settings.worker.max_message_bytes, settings.worker.max_events_per_message
        )
        self.validate = ValidateStage(settings.validation)
        self.redact = RedactStage(settings.redact, redaction_key(settings.redact, settings.home))
        self.minimum = LEVELS.index(dest.min_level)
        self.tenants = frozenset(dest.tenants)
        self.categories = frozenset(dest.categories)

    def sort(self, records: list[Any]) -> Taken:
        taken = Taken(ends=_ends(records))
        messages = [
            RawMessage(r.partition, r.offset, r.key, r.value or b"", r.timestamp or 0)
            for r in records
        ]
        ctx = BatchContext(source_topic=self.topic)
        parts = decode_messages(self.codec, messages, ctx, self.limits)
        events = [event for part in parts.values() for event in part.events]
        events = self.redact.process(self.validate.process(events, ctx), ctx)
        taken.invalid = len(ctx.dead.records)
        for event in events:
            if (
                (self.tenants and event["tenant"] not in self.tenants)
                or (self.categories and event["category"] not in self.categories)
                or LEVELS.index(event.get("level") or "info") < self.minimum
            ):
                taken.filtered += 1
                continue
            item = from_event(event)
            where = Provenance(self.topic, event["kafka_partition"], event["kafka_offset"], None)
            taken.keep(item, where, orjson.dumps(item.record))
        return taken


def sorter_for(
    settings: Settings, dest: ForwardDestination, codec: AvroCodec
) -> AlertSorter | EventSorter:
    if dest.records == "events":
        return EventSorter(settings, dest, codec)
    return AlertSorter(settings, dest, codec)
