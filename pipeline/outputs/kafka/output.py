"""Kafka topics as an ``Output`` (``outputs/base.py``): alerts to ``audit.alerts`` and
their severity routes, dead letters to ``audit.deadletter``, the second copy of the
signed checkpoints to ``audit.checkpoints``, and messages over a rate limit to
``audit.events.deferred``.

The producer lives on the worker's event loop and the batch runs in its own thread:
``write`` hands the sends to the loop and waits until Kafka has taken every record (a
batch is never acknowledged before its alerts and dead letters are out). Alerts are
sent when written, so an alert's latency does not wait for the batch's insert.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from pipeline.config import Settings
from pipeline.outputs.base import Kind, Records
from pipeline.outputs.kafka.publish import (
    alert_publisher,
    publish_checkpoints,
    publish_dead_letters,
    publish_deferred,
)
from pipeline.schema.codec import AvroCodec

SEND_TIMEOUT_S = 60.0
"""Longest wait for Kafka to take a write's records (else the batch fails, unacknowledged)."""


class TopicsOutput:
    name = "kafka"
    kinds: frozenset[Kind] = frozenset({"dead_letters", "alerts", "checkpoints", "deferred"})

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        topic_of: Callable[[str], Any],
        settings: Settings,
        codec: AvroCodec,
    ) -> None:
        self.loop = loop
        kafka = settings.kafka
        dead_letters = topic_of(kafka.topic_deadletter)
        checkpoints = topic_of(kafka.topic_checkpoints)
        deferred = topic_of(kafka.topic_deferred)
        alerts = alert_publisher(topic_of, settings, codec)
        self._send: dict[Kind, Callable[[list[Any]], Coroutine[Any, Any, None]]] = {
            "alerts": alerts,
            "dead_letters": lambda items: publish_dead_letters(dead_letters, codec, items),
            "checkpoints": lambda items: publish_checkpoints(
                checkpoints, [c.record() for c in items]
            ),
            "deferred": lambda items: publish_deferred(deferred, items),
        }

    def write(self, records: Records) -> None:
        send = self._send[records.kind](list(records.items))
        asyncio.run_coroutine_threadsafe(send, self.loop).result(timeout=SEND_TIMEOUT_S)

    def flush(self) -> None:
        """Nothing is kept: every write waited until Kafka had it."""
