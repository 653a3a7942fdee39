"""Dead letters: what the pipeline could not process, with the reason and the original bytes.

Each becomes a ``dead_letter`` Avro record on ``audit.deadletter`` and a row in ClickHouse
``audit.deadletter``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from pipeline.schema.event import Event, event_to_json

DEADLETTER_COLUMNS = (
    "failed_at",
    "reason",
    "detail",
    "source_topic",
    "source_partition",
    "source_offset",
    "event_id",
    "key",
    "original",
)


@dataclass(frozen=True)
class Provenance:
    topic: str
    partition: int
    offset: int
    key: bytes | None


@dataclass
class DeadLetters:
    """The dead letters of one batch, and counts by reason."""

    records: list[dict[str, Any]] = field(default_factory=list)
    by_reason: Counter[str] = field(default_factory=Counter)
    mask: Callable[[Event], Event] | None = None
    """Masks the secrets of a copy of an event (the worker's redaction), so that a dead
    letter of one event stores no raw secret either."""
    chained: list[tuple[str, str, int]] = field(default_factory=list)
    """(tenant, sandbox_id, seq) of the chained events dead-lettered: not stored, so no
    signed checkpoint may name them as a chain's head."""

    def message(self, where: Provenance, reason: str, detail: str, original: bytes) -> None:
        """A whole Kafka message failed."""
        self._add(where, reason, detail, original, None)

    def event(self, where: Provenance, reason: str, detail: str, event: Event) -> None:
        """One event of a batch failed; the rest of its message goes on."""
        if event.get("hash") is not None and event.get("seq") is not None:
            self.chained.append((event["tenant"], event["sandbox_id"], event["seq"]))
        if self.mask is not None:
            event = self.mask(event)
        payload = {k: v for k, v in event_to_json(event).items() if not k.startswith("kafka_")}
        self._add(where, reason, detail, orjson.dumps(payload, default=str), event["event_id"])

    def _add(
        self, where: Provenance, reason: str, detail: str, original: bytes, event_id: str | None
    ) -> None:
        self.by_reason[reason] += 1
        self.records.append(
            {
                "reason": reason,
                "detail": detail[:2000],
                "source_topic": where.topic,
                "source_partition": where.partition,
                "source_offset": where.offset,
                "key": where.key,
                "original": original,
                "event_id": event_id,
                "failed_at": time.time_ns() // 1_000_000,
            }
        )

    def __len__(self) -> int:
        return len(self.records)

    def columns(self) -> list[list[Any]]:
        """Column lists in DEADLETTER_COLUMNS order, for ClickHouse."""
        return record_columns(self.records)


def record_columns(recs: list[dict[str, Any]]) -> list[list[Any]]:
    """Dead-letter records as column lists in DEADLETTER_COLUMNS order, for ClickHouse."""
    return [
        [r["failed_at"] for r in recs],
        [r["reason"] for r in recs],
        [r["detail"] for r in recs],
        [r["source_topic"] for r in recs],
        [r["source_partition"] for r in recs],
        [r["source_offset"] for r in recs],
        [r["event_id"] for r in recs],
        [None if r["key"] is None else r["key"].decode("utf-8", "replace") for r in recs],
        [r["original"] for r in recs],
    ]
