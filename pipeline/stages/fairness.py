"""Fairness stage: per-sandbox and per-tenant rate limits, without loss (docs/fairness.md).

Why: a partition is a queue. A compromised sandbox that sends as fast as its collector
accepts puts its events in front of every other sandbox of its partition, and takes the
worker's time from every tenant: their events and alerts wait behind the flood, which is
itself a way to hide (defense evasion). Dropping the excess would lose audit events.

How: a token bucket per sandbox and, when ``fairness.tenant_events_per_s`` is set, one
per tenant (``fairness.*_events_per_s`` and ``*_burst``). A message carries the events of
one sandbox (the collector sends one chain per message); it is *admitted* when its
buckets hold its events, and then takes them.
Otherwise it is *deferred*: its events leave the chunk, and the message, as it arrived,
goes to ``kafka.topic_deferred`` (same key, same partition) before any row after it is
stored (``worker/batch.py``). The worker stores deferred messages when the events topic
leaves it room (``worker/agent.py``), through the same stages. Deferred events are
counted (``auditpipe_events_deferred_total``) and counted in again when they are taken
from the deferred topic; nothing is dropped.

Order: once a message of a sandbox (its Kafka key) is deferred, every later message of
that key is deferred too until the deferred path has taken all of them (``pending``), so
the stages see each sandbox's events in the order it sent them (its hash chain is
checked live, in order). The count is kept in memory: after a worker restart in the middle
of a flood, the first messages admitted may overtake deferred ones of their sandbox; the
chain check then starts from a new baseline anyway (``rules/integrity.py``), and the dedup
window (persisted) absorbs a message deferred twice by a replay.

Clock: each message is measured at its Kafka timestamp, never later than the worker's
clock, and a bucket's time never goes back. A backlog read after an outage is judged by
when it was sent, not by how fast it is read; a forged timestamp (in the future: the
worker's clock; in the past: no refill) earns no tokens.

Alert: a sandbox whose message goes over a limit raises ``AP-FLOOD`` (once per
``fairness.alert_interval_s`` of message time); its id comes from the rule, the sandbox
and the message's first event id, so a replayed batch raises the same alert.

>>> from pipeline.config import FairnessConfig
>>> share = FairShare(FairnessConfig(sandbox_events_per_s=10, sandbox_burst=100))
>>> [share.admit(b"k", ("t", "sb"), 60, 1_000_000) for _ in range(2)]
[None, 'sandbox_rate']
>>> share.admit(b"k", ("t", "sb"), 10, 1_010_000)  # 10 s later, but one is pending
'behind_deferred'
>>> share.drained([b"k", b"k"]); share.admit(b"k", ("t", "sb"), 10, 1_010_000) is None
True
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator

from pipeline.config import FairnessConfig
from pipeline.rules.alerts import Alert, make_alert
from pipeline.schema.event import Event
from pipeline.stages.base import BatchContext, StageBase

FLOOD_RULE = "AP-FLOOD"
FLOOD_TITLE = "Audit event flood: a sandbox over its rate limit"
FLOOD_TAGS = ("flooding", "attack.defense_evasion", "attack.t1562")
SWEEP_EVERY_MS = 60_000
"""How often (in message time) full buckets are forgotten: a full bucket is no bucket."""

SandboxKey = tuple[str, str]


class TokenBuckets:
    """One bucket per key: ``burst`` tokens at most, refilled at ``rate`` per second of
    the time given. A key without a bucket has a full one.

    >>> buckets = TokenBuckets(rate_per_s=100, burst=150)
    >>> buckets.take("a", 150, 0), buckets.take("a", 1, 0), buckets.take("a", 100, 1_000)
    (True, False, True)
    """

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate_per_ms = rate_per_s / 1000.0
        self.burst = float(burst)
        self.buckets: dict[object, list[float]] = {}
        """key -> [tokens, time in ms of the last refill]."""

    def available(self, key: object, t_ms: int) -> float:
        """The key's tokens at ``t_ms`` (refilled; time never goes back)."""
        bucket = self.buckets.get(key)
        if bucket is None:
            return self.burst
        if t_ms > bucket[1]:
            bucket[0] = min(self.burst, bucket[0] + (t_ms - bucket[1]) * self.rate_per_ms)
            bucket[1] = t_ms
        return bucket[0]

    def take(self, key: object, n: int, t_ms: int) -> bool:
        """Take ``n`` tokens if the key has them."""
        if self.available(key, t_ms) < n:
            return False
        self.spend(key, n, t_ms)
        return True

    def spend(self, key: object, n: int, t_ms: int) -> None:
        """Take ``n`` tokens (after ``available`` said there are)."""
        bucket = self.buckets.get(key)
        if bucket is None:
            self.buckets[key] = [self.burst - n, float(t_ms)]
        else:
            bucket[0] -= n

    def sweep(self, t_ms: int) -> None:
        """Forget the buckets that are full again at ``t_ms``."""
        for key in [k for k in self.buckets if self.available(k, t_ms) >= self.burst]:
            del self.buckets[key]


class FairShare:
    """The limits' state: the buckets, the keys with deferred messages not taken yet,
    and when each sandbox was last alerted on. Used from the batch thread only."""

    def __init__(self, config: FairnessConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.sandboxes = TokenBuckets(config.sandbox_events_per_s, config.sandbox_burst)
        tenant_rate = config.tenant_events_per_s
        self.tenants = TokenBuckets(tenant_rate, config.tenant_burst) if tenant_rate else None
        self.pending: Counter[bytes | None] = Counter()
        """Kafka key -> its messages deferred and not yet taken by the deferred path."""
        self.alerted_ms: dict[SandboxKey, int] = {}
        self._swept_ms = 0

    def now_ms(self, message_ms: int) -> int:
        """The time a message is measured at: its Kafka timestamp, never ahead of the
        worker's clock (0, unknown: the worker's clock)."""
        now = int(self.clock() * 1000)
        return message_ms if 0 < message_ms < now else now

    def admit(self, key: bytes | None, sandbox: SandboxKey, n: int, t_ms: int) -> str | None:
        """None if a message of ``n`` events may go on now, else why it is deferred:
        ``behind_deferred`` (earlier messages of its key are), ``sandbox_rate`` or
        ``tenant_rate``."""
        if self.pending[key] > 0:
            self.pending[key] += 1
            return "behind_deferred"
        self._maybe_sweep(t_ms)
        tenant = sandbox[0]
        tenants = self.tenants
        if self.sandboxes.available(sandbox, t_ms) < n:
            reason = "sandbox_rate"
        elif tenants is not None and tenants.available(tenant, t_ms) < n:
            reason = "tenant_rate"
        else:
            self.sandboxes.spend(sandbox, n, t_ms)
            if tenants is not None:
                tenants.spend(tenant, n, t_ms)
            return None
        self.pending[key] += 1
        return reason

    def drained(self, keys: Iterable[bytes | None]) -> None:
        """The deferred path took messages of these keys (one per message)."""
        pending = self.pending
        for key in keys:
            left = pending.get(key, 0) - 1
            if left > 0:
                pending[key] = left
            else:
                pending.pop(key, None)

    def should_alert(self, sandbox: SandboxKey, t_ms: int) -> bool:
        """Whether a sandbox over a limit at ``t_ms`` raises a flooding alert now."""
        last = self.alerted_ms.get(sandbox)
        if last is not None and t_ms - last < self.config.alert_interval_s * 1000:
            return False
        self.alerted_ms[sandbox] = t_ms
        return True

    def _maybe_sweep(self, t_ms: int) -> None:
        if t_ms - self._swept_ms < SWEEP_EVERY_MS:
            return
        self._swept_ms = t_ms
        self.sandboxes.sweep(t_ms)
        if self.tenants is not None:
            self.tenants.sweep(t_ms)
        horizon = t_ms - self.config.alert_interval_s * 1000
        self.alerted_ms = {k: v for k, v in self.alerted_ms.items() if v >= horizon}


class FairnessStage(StageBase):
    """The first stage: each message of the chunk admitted or deferred (see above)."""

    name = "fairness"

    def __init__(self, share: FairShare) -> None:
        self.share = share

    def process(self, events: list[Event], ctx: BatchContext) -> list[Event]:
        share = self.share
        kept: list[Event] | None = None  # a copy only once a message is deferred
        for start, end in _messages(events):
            first = events[start]
            where = (first["kafka_partition"], first["kafka_offset"])
            key, sent_ms = ctx.arrivals.get(where, (None, 0))
            t_ms = share.now_ms(sent_ms)
            sandbox = (first["tenant"], first["sandbox_id"])
            reason = share.admit(key, sandbox, end - start, t_ms)
            if reason is None:
                if kept is not None:
                    kept.extend(events[start:end])
                continue
            if kept is None:
                kept = events[:start]
            ctx.deferred.append(where)
            ctx.count("events_deferred", end - start, reason=reason)
            if reason != "behind_deferred" and share.should_alert(sandbox, t_ms):
                ctx.alerts.append(_flood_alert(sandbox, first, end - start, t_ms))
        ctx.gauges["deferred_keys"] = len(share.pending)
        return events if kept is None else kept


def _messages(events: list[Event]) -> Iterator[tuple[int, int]]:
    """(start, end) of each run of events from one message (decode keeps them together)."""
    start, n = 0, len(events)
    while start < n:
        partition, offset = events[start]["kafka_partition"], events[start]["kafka_offset"]
        end = start + 1
        while (
            end < n
            and events[end]["kafka_offset"] == offset
            and events[end]["kafka_partition"] == partition
        ):
            end += 1
        yield start, end
        start = end


def _flood_alert(sandbox: SandboxKey, first: Event, events: int, t_ms: int) -> Alert:
    return make_alert(
        FLOOD_RULE,
        FLOOD_TITLE,
        "medium",
        FLOOD_TAGS,
        sandbox[0],
        sandbox[1],
        t_ms,
        t_ms,
        events,
        [str(first.get("event_id") or "")],
        kind="flood",
    )
