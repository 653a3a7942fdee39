"""What a stage is: a function over a batch of events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from pipeline.deadletter import DeadLetters
from pipeline.rules.alerts import Alert
from pipeline.schema.event import Event


@dataclass
class BatchContext:
    """Shared by the stages of one batch: its side outputs. The batch code drains them
    (dead letters stored and published, alerts published and stored)."""

    source_topic: str
    dead: DeadLetters = field(default_factory=DeadLetters)
    alerts: list[Alert] = field(default_factory=list)
    """Alerts a stage raised outside the detection rules (e.g. dedup's replay alert)."""


class Stage(Protocol):
    """A step between decode and the sink.

    ``process`` gets the batch's events (each with ``kafka_partition``/``kafka_offset``)
    and returns those that go on. An event it drops on purpose it counts; an event it
    cannot handle it dead-letters through ``ctx.dead``. It never loses one silently.
    """

    name: str

    def process(self, events: list[Event], ctx: BatchContext) -> list[Event]: ...
