"""Validate stage: events that Avro accepts but the pipeline must not (or cannot) store.

Avro checks types; this checks meaning and the storage types. A compromised sandbox
controls every value of its events, so any value that fits the Avro schema but not its
ClickHouse column would otherwise fail the insert of its whole block on every retry and
halt the audit trail of every tenant. Each failing event is dead-lettered alone, with its
reason, and the rest of its batch goes on:

* ``invalid_event``: an empty ``tenant``, ``sandbox_id``, ``event_id`` or ``action``;
* ``out_of_range``: an integer its column cannot hold (uid, pid, ppid: UInt32; seq,
  bytes: UInt64; see ``pipeline/schema/storage.py``);
* ``ts_in_future``: ``ts`` more than ``validation.max_future_s`` ahead of the worker's clock
  (a broken clock, or an attempt to hide events from time-range queries);
* ``ts_too_old``: ``ts`` more than ``validation.max_past_s`` behind it (unless the tenant
  may backfill: ``validation.backfill_tenants``); each old day would open a partition;
* ``oversized_field``: an id or name longer than ``validation.max_id_bytes``, a string
  longer than ``validation.max_field_bytes``, ``attributes`` with more than
  ``validation.max_attributes`` entries, or more than ``validation.max_event_bytes`` of
  text in one event.

>>> from pipeline.config import ValidateConfig
>>> stage = ValidateStage(ValidateConfig(), now_ms=lambda: 1_000_000_000_000)
>>> ctx = BatchContext("audit.events")
>>> event = {"event_id": "e1", "tenant": "", "sandbox_id": "s", "action": "exec", "ts": 0,
...          "actor": {"cmdline": "", "process": "", "user": ""}, "object": "",
...          "attributes": {}, "kafka_partition": 0, "kafka_offset": 9}
>>> stage.process([event], ctx), ctx.dead.records[0]["reason"], ctx.dead.records[0]["detail"]
([], 'invalid_event', 'tenant: required')
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

from pipeline.config import ValidateConfig
from pipeline.schema.deadletter import Provenance
from pipeline.schema.event import Event
from pipeline.schema.storage import INTEGER_COLUMNS, TS_RANGE_MS, out_of_range
from pipeline.stages.base import BatchContext, StageBase

REQUIRED = ("event_id", "tenant", "sandbox_id", "action")
_UINT32_MAX = INTEGER_COLUMNS["actor.uid"][1]
_UINT64_MAX = INTEGER_COLUMNS["seq"][1]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class ValidateStage(StageBase):
    name = "validate"

    def __init__(self, config: ValidateConfig, now_ms: Callable[[], int] = _now_ms) -> None:
        self.config = config
        self.now_ms = now_ms
        self._backfill_ms = {
            tenant: round(seconds * 1000) for tenant, seconds in config.backfill_tenants.items()
        }

    def process(self, events: list[Event], ctx: BatchContext) -> list[Event]:
        now = self.now_ms()
        limits = _Limits(
            latest_ts=min(now + int(self.config.max_future_s * 1000), TS_RANGE_MS[1]),
            oldest_ts=max(now - int(self.config.max_past_s * 1000), TS_RANGE_MS[0]),
            field_bytes=self.config.max_field_bytes,
            id_bytes=self.config.max_id_bytes,
            event_bytes=self.config.max_event_bytes,
            attributes=self.config.max_attributes,
        )
        kept: list[Event] = []
        for event in events:
            problem = _problem(event, limits)
            if problem is not None and problem[0] == "ts_too_old":
                problem = self._backfill(event, now, limits)
            if problem is None:
                kept.append(event)
            else:
                where = Provenance(
                    ctx.source_topic, event["kafka_partition"], event["kafka_offset"], None
                )
                ctx.dead.event(where, problem[0], problem[1], event)
        return kept

    def _backfill(self, event: Event, now: int, limits: _Limits) -> tuple[str, str] | None:
        """An old event of a tenant allowed to backfill: checked against its own bound."""
        allowed = self._backfill_ms.get(event["tenant"], self._backfill_ms.get("*"))
        if allowed is None:
            return _too_old(event["ts"], limits.oldest_ts)
        oldest = max(now - allowed, TS_RANGE_MS[0])
        if event["ts"] < oldest:
            return _too_old(event["ts"], oldest)
        return _problem(event, limits._replace(oldest_ts=oldest))


class _Limits(NamedTuple):
    latest_ts: int
    oldest_ts: int
    field_bytes: int
    id_bytes: int
    event_bytes: int
    attributes: int


def _too_old(ts: int, oldest: int) -> tuple[str, str]:
    return "ts_too_old", f"ts {ts} is before {oldest} (now - allowed age)"


def _problem(event: Event, limits: _Limits) -> tuple[str, str] | None:
    """(reason, detail) of the first problem, or None. Cheap checks first: this runs per
    event, and a valid event pays a few comparisons and length checks."""
    if not (event["tenant"] and event["sandbox_id"] and event["event_id"] and event["action"]):
        missing = next(name for name in REQUIRED if not event[name])
        return "invalid_event", f"{missing}: required"
    actor = event["actor"]
    seq, size = event["seq"], event["bytes"]
    uid, pid, ppid = actor["uid"], actor["pid"], actor["ppid"]
    if not (
        0 <= seq <= _UINT64_MAX
        and (size is None or 0 <= size <= _UINT64_MAX)
        and (uid is None or 0 <= uid <= _UINT32_MAX)
        and (pid is None or 0 <= pid <= _UINT32_MAX)
        and (ppid is None or 0 <= ppid <= _UINT32_MAX)
    ):
        return "out_of_range", _range_detail(event)
    ts = event["ts"]
    if ts > limits.latest_ts:
        return "ts_in_future", f"ts {ts} is after {limits.latest_ts} (now + allowed skew)"
    if ts < limits.oldest_ts:
        return _too_old(ts, limits.oldest_ts)
    return _size_problem(event, limits)


def _range_detail(event: Event) -> str:
    actor = event["actor"]
    for field in INTEGER_COLUMNS:
        head, _, name = field.partition(".")
        value = actor[name] if name else event[head]
        problem = out_of_range(field, value)
        if problem is not None:
            return problem
    raise AssertionError("no value out of range")  # pragma: no cover


def _size_problem(event: Event, limits: _Limits) -> tuple[str, str] | None:
    actor = event["actor"]
    attributes = event["attributes"]
    id_bytes = limits.id_bytes
    # A character is at most 4 bytes, so short text needs no bytes counted, and the common
    # event is short everywhere: a few sums (in C) clear all of its fields at once.
    ids = (
        len(event["tenant"]) + len(event["sandbox_id"]) + len(event["event_id"])
        + len(event["action"]) + len(actor["user"]) + len(actor["process"])
    )  # fmt: skip
    text = (
        len(actor["cmdline"]) + len(event["object"])
        + len(actor.get("parent_process") or "") + len(actor.get("parent_cmdline") or "")
    )  # fmt: skip
    extra = sum(map(len, attributes)) + sum(map(len, attributes.values())) if attributes else 0
    if (
        ids * 4 <= id_bytes
        and (text + extra) * 4 <= limits.field_bytes
        and extra * 4 <= id_bytes
        and (text + extra) * 4 <= limits.event_bytes
        and len(attributes) <= limits.attributes
    ):
        return None
    return _size_detail(event, limits)


def _size_detail(event: Event, limits: _Limits) -> tuple[str, str] | None:
    """The slow path: which field is over its bound, if any."""
    actor = event["actor"]
    attributes = event["attributes"]
    id_bytes, field_bytes = limits.id_bytes, limits.field_bytes
    for name, value, limit in (
        ("tenant", event["tenant"], id_bytes),
        ("sandbox_id", event["sandbox_id"], id_bytes),
        ("event_id", event["event_id"], id_bytes),
        ("action", event["action"], id_bytes),
        ("actor.user", actor["user"], id_bytes),
        ("actor.process", actor["process"], id_bytes),
        ("actor.cmdline", actor["cmdline"], field_bytes),
        ("actor.parent_process", actor.get("parent_process") or "", field_bytes),
        ("actor.parent_cmdline", actor.get("parent_cmdline") or "", field_bytes),
        ("object", event["object"], field_bytes),
    ):
        if len(value) * 4 > limit and len(value.encode()) > limit:
            return "oversized_field", f"{name}: over {limit} bytes"
    if len(attributes) > limits.attributes:
        return (
            "oversized_field",
            f"attributes: {len(attributes)} entries (max {limits.attributes})",
        )
    for key, value in attributes.items():
        if len(key) * 4 > id_bytes and len(key.encode()) > id_bytes:
            return "oversized_field", f"attributes: a key over {id_bytes} bytes"
        if len(value) * 4 > field_bytes and len(value.encode()) > field_bytes:
            return "oversized_field", f"attributes.{key}: over {field_bytes} bytes"
    if _text_bytes(event) > limits.event_bytes:
        return "oversized_field", f"event: over {limits.event_bytes} bytes of text"
    return None


def _text_bytes(event: Event) -> int:
    actor = event["actor"]
    parts = [actor["cmdline"], event["object"], *event["attributes"].keys()]
    parts += [actor.get("parent_process") or "", actor.get("parent_cmdline") or ""]
    parts.extend(event["attributes"].values())
    return sum(len(p.encode()) for p in parts)
