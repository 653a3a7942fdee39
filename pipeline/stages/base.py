"""What a stage is: a function over a batch of events, and the typed context that carries
its side outputs.

A stage knows nothing of storage or metrics objects: what it produces besides the events
that go on (dead letters, alerts, counts, the events the policy kept back and their chain
links) it puts on the :class:`BatchContext` as plain values; the batch code
(``pipeline/worker/batch.py``) drains the context generically, through the outputs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from pipeline.rules.alerts import Alert
from pipeline.schema.deadletter import DeadLetters
from pipeline.schema.event import Event

Labels = tuple[tuple[str, str], ...]


class KeptBack(NamedTuple):
    """Events the level policy kept back, counted per minute, sandbox, category, level
    (``audit.events_policy_rollup``)."""

    minute_s: int
    tenant: str
    sandbox_id: str
    environment: str
    category: str
    level: str


class ChainLink(NamedTuple):
    """The place in its chain of a chained event that is not stored as a row
    (``audit.chain_links``), so ``verify`` follows the chain through it."""

    tenant: str
    sandbox_id: str
    seq: int
    ts: int
    hash: bytes
    prev_hash: bytes


@dataclass
class BatchContext:
    """Shared by the stages of one batch: its side outputs, as values."""

    source_topic: str = "audit.events"
    dead: DeadLetters = field(default_factory=DeadLetters)
    alerts: list[Alert] = field(default_factory=list)
    """Alerts raised (the detection rules, dedup's replay alert); sent after each chunk."""
    counts: Counter[tuple[str, Labels]] = field(default_factory=Counter)
    """(metric name, labels) -> events counted: the ``auditpipe_*`` counters of
    ``pipeline/worker/metrics.py``, by their name without prefix and ``_total``."""
    gauges: dict[str, float] = field(default_factory=dict)
    kept_back: Counter[KeptBack] = field(default_factory=Counter)
    links: list[ChainLink] = field(default_factory=list)
    arrivals: dict[tuple[int, int], tuple[bytes | None, int]] = field(default_factory=dict)
    """(partition, offset) -> the message's Kafka key and timestamp in ms (set by decode)."""
    deferred: list[tuple[int, int]] = field(default_factory=list)
    """(partition, offset) of the messages moved to the deferred topic (the fairness
    stage took their events out of the chunk); sent before any row after them."""

    def count(self, metric: str, n: int = 1, **labels: str) -> None:
        if n:
            self.counts[(metric, tuple(sorted(labels.items())))] += n

    def counted(self, metric: str, **labels: str) -> int:
        """What was counted under ``metric`` (all labels when none given)."""
        if labels:
            return self.counts[(metric, tuple(sorted(labels.items())))]
        return sum(n for (name, _), n in self.counts.items() if name == metric)


class Stage(Protocol):
    """A step between decode and the sink.

    ``process`` gets the events of one chunk of the batch (each with
    ``kafka_partition``/``kafka_offset``) and returns those that go on. An event it drops
    on purpose it counts on ``ctx``; an event it cannot handle it dead-letters through
    ``ctx.dead``. It never loses one silently. ``finish`` runs once at the end of the
    batch (e.g. alerts of suppression windows that closed).
    """

    name: str

    def process(self, events: list[Event], ctx: BatchContext) -> list[Event]: ...

    def finish(self, ctx: BatchContext) -> None: ...


class StageBase:
    """Default ``finish``: nothing to release at the end of a batch."""

    def finish(self, ctx: BatchContext) -> None:
        return None
