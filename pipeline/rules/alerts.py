"""Alerts, their deterministic ids, and suppression of repeats.

An alert's id is derived from the rule, the sandbox and its first evidence event, so a
batch that is processed again after a crash yields the same alert ids: a consumer (and
ClickHouse, which keys ``audit.alerts`` on it) sees a replayed alert as the same alert.

Suppression: the first alert of a rule on a sandbox goes out at once; repeats within the
rule's suppression window are held and counted, and when the window closes (in event time,
or in wall time for a sandbox gone quiet) one summary alert stands for all of them, with
their count, first and last event time and evidence.

>>> s = Suppressor(default_ms=60_000, clock=lambda: 0.0)
>>> first = make_alert("R1", "t", "high", (), "acme", "sb", 1_000, 1_000, 1, ["e1"])
>>> s.offer(first, None) is first
True
>>> [s.offer(make_alert("R1", "t", "high", (), "acme", "sb", t, t, 1, [f"e{t}"]), None)
...  for t in (2_000, 3_000)]
[None, None]
>>> summary, = s.due(Watermarks(everywhere=70_000))
>>> summary.count, summary.first_ts, summary.last_ts, summary.evidence
(2, 2000, 3000, ('e2000', 'e3000'))
"""

from __future__ import annotations

import hashlib
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.rules.windows import Watermarks

MAX_EVIDENCE = 100


@dataclass(frozen=True)
class Alert:
    alert_id: str
    rule_id: str
    title: str
    severity: str
    tags: tuple[str, ...]
    tenant: str
    sandbox_id: str
    first_ts: int
    last_ts: int
    count: int
    evidence: tuple[str, ...]

    def record(self) -> dict[str, Any]:
        """The alert as an Avro/JSON record (schema ``alert``)."""
        return {
            "alert_id": self.alert_id,
            "rule_id": self.rule_id,
            "title": self.title,
            "severity": self.severity,
            "tags": list(self.tags),
            "tenant": self.tenant,
            "sandbox_id": self.sandbox_id,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "count": self.count,
            "evidence": list(self.evidence),
        }

    @property
    def key(self) -> bytes:
        """The Kafka key: tenant/sandbox_id."""
        return f"{self.tenant}/{self.sandbox_id}".encode()


ALERT_COLUMNS = (
    "alert_id",
    "rule_id",
    "title",
    "severity",
    "tags",
    "tenant",
    "sandbox_id",
    "first_ts",
    "last_ts",
    "count",
    "evidence",
)


def alert_columns(alerts: list[Alert]) -> list[list[Any]]:
    """Column lists in ALERT_COLUMNS order, for ClickHouse."""
    return [[getattr(a, name) for a in alerts] for name in ALERT_COLUMNS]


def alert_id(rule_id: str, tenant: str, sandbox_id: str, first_evidence: str, kind: str) -> str:
    digest = hashlib.sha256(
        "\x00".join((rule_id, tenant, sandbox_id, first_evidence, kind)).encode()
    ).digest()
    return str(uuid.UUID(bytes=digest[:16], version=5))


def make_alert(
    rule_id: str,
    title: str,
    severity: str,
    tags: tuple[str, ...],
    tenant: str,
    sandbox_id: str,
    first_ts: int,
    last_ts: int,
    count: int,
    evidence: list[str],
    kind: str = "alert",
) -> Alert:
    return Alert(
        alert_id=alert_id(rule_id, tenant, sandbox_id, evidence[0] if evidence else "", kind),
        rule_id=rule_id,
        title=title,
        severity=severity,
        tags=tags,
        tenant=tenant,
        sandbox_id=sandbox_id,
        first_ts=first_ts,
        last_ts=last_ts,
        count=count,
        evidence=tuple(evidence[:MAX_EVIDENCE]),
    )


@dataclass
class _Held:
    opened_ts: int
    opened_wall: float
    window_ms: int
    template: Alert
    count: int = 0
    first_ts: int = 0
    last_ts: int = 0
    evidence: list[str] = field(default_factory=list)


class Suppressor:
    """Holds repeats of (rule, tenant, sandbox) within a window; ``due`` releases them."""

    def __init__(self, default_ms: int, clock: Callable[[], float] = time.time) -> None:
        self.default_ms = default_ms
        self.clock = clock
        self.held: dict[tuple[str, str, str], _Held] = {}
        self.suppressed = 0
        """Alerts folded into a summary (for the metrics; the worker reads and resets)."""
        self._pending: list[Alert] = []
        self._next_close_ts = math.inf
        self._next_close_wall = math.inf
        """When the earliest held window closes (event time, wall time)."""
        """Summaries of windows that a new alert closed, released by the next ``due``."""

    def offer(self, alert: Alert, window_ms: int | None) -> Alert | None:
        """The alert to publish now, or None when it is a repeat being held."""
        window = self.default_ms if window_ms is None else window_ms
        if window <= 0:
            return alert
        key = (alert.rule_id, alert.tenant, alert.sandbox_id)
        held = self.held.get(key)
        if held is None or alert.first_ts > held.opened_ts + held.window_ms:
            summary = self._release(key) if held is not None else None
            self.held[key] = opened = _Held(alert.first_ts, self.clock(), window, alert)
            self._next_close_ts = min(self._next_close_ts, opened.opened_ts + window)
            self._next_close_wall = min(self._next_close_wall, opened.opened_wall + window / 1000)
            if summary is not None:  # the old window's repeats, then the new alert
                self._pending.append(summary)
            return alert
        held.first_ts = alert.first_ts if not held.count else min(held.first_ts, alert.first_ts)
        held.count += alert.count
        held.last_ts = max(held.last_ts, alert.last_ts)
        room = MAX_EVIDENCE - len(held.evidence)
        held.evidence.extend(alert.evidence[:room])
        self.suppressed += 1
        return None

    def due(self, watermarks: Watermarks) -> list[Alert]:
        """Summaries of the windows that closed: in their tenant's event time, or in wall
        time."""
        out, self._pending = self._pending, []
        now = self.clock()
        # Called for every chunk: scan the held windows only once one of them can close.
        if watermarks.highest <= self._next_close_ts and now <= self._next_close_wall:
            return out
        self._next_close_ts = self._next_close_wall = math.inf
        for key, held in list(self.held.items()):
            closed = (
                watermarks.of(key[1]) > held.opened_ts + held.window_ms
                or now > held.opened_wall + held.window_ms / 1000
            )
            if closed:
                summary = self._release(key)
                if summary is not None:
                    out.append(summary)
            else:
                self._next_close_ts = min(self._next_close_ts, held.opened_ts + held.window_ms)
                self._next_close_wall = min(
                    self._next_close_wall, held.opened_wall + held.window_ms / 1000
                )
        return out

    def _release(self, key: tuple[str, str, str]) -> Alert | None:
        held = self.held.pop(key)
        if not held.count:
            return None
        t = held.template
        return make_alert(
            t.rule_id, t.title, t.severity, t.tags, t.tenant, t.sandbox_id,
            held.first_ts, held.last_ts, held.count, held.evidence, kind="repeats",
        )  # fmt: skip
