"""The detection engine: compiled rules over batches of events, alerts out.

Per batch: one call of the compiled matcher per event (see ``compiler``); then, for the
predicates that held, an event rule makes an alert, a threshold or sequence rule feeds
its window (see ``windows``). Every event a rule matched gets the rule's id in
``event["matched_rules"]``, so the policy stage stores it whatever its level. Alerts pass
the suppressor before they leave.

>>> from pipeline.rules.language import parse_rules_text
>>> engine = DetectionEngine(parse_rules_text('''
... rules:
...   - {id: R1, title: Shadow read, severity: high,
...      condition: {category: file, object: /etc/shadow}}
... '''))
>>> ev = {"event_id": "e1", "ts": 1, "tenant": "acme", "sandbox_id": "sb", "category": "file",
...       "object": "/etc/shadow", "actor": {}}
>>> [(a.rule_id, a.evidence) for a in engine.process([ev])], ev["matched_rules"]
([('R1', ('e1',))], ['R1'])
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.rules.alerts import Alert, Suppressor, make_alert
from pipeline.rules.compiler import (
    _host,
    _num,
    _port,
    _text,
    all_text,
    compile_predicates,
    object_owned,
)
from pipeline.rules.integrity import (
    INTEGRITY_RULES,
    INTEGRITY_TAGS,
    ChainMonitor,
    integrity_findings,
)
from pipeline.rules.language import Condition, Rule, RuleSet
from pipeline.rules.sequences import SequenceWindows
from pipeline.rules.thresholds import ThresholdWindows
from pipeline.rules.windows import DEFAULT_MAX_EVENTS, Fired, Key, Watermarks
from pipeline.schema.event import Event

DEFAULT_LATENESS_MS = 60_000
DEFAULT_SUPPRESS_MS = 300_000
STATE_SEPARATOR = "\x1f"
DEFINITION_SEPARATOR = "\x1d"


def field_getter(name: str) -> Callable[[Event], Any]:
    """The raw value of a field of an event (None when absent)."""
    if name == "text":
        return all_text
    if name == "object_host":
        return lambda e: _host(e.get("object"))
    if name == "object_port":
        return lambda e: _port(e.get("object"))
    if name == "object_owned":
        return object_owned
    head, _, rest = name.partition(".")
    if rest and head in ("actor", "attributes", "labels"):
        return lambda e: (e.get(head) or {}).get(rest)
    return lambda e: e.get(name)


def key_getter(fields: tuple[str, ...]) -> Callable[[Event], Key]:
    """A window's key: the tenant first, then the ``by`` fields. Rules parsed from YAML
    already lead with (tenant, sandbox_id) (``parser._by``); a rule built in code with
    other fields gets the tenant in front, so no key is shared by two tenants."""
    if fields[:1] != ("tenant",):
        fields = ("tenant", *fields)
    getters = [field_getter(f) for f in fields]
    return lambda e: tuple(_text(g(e)) for g in getters)


@dataclass
class _Predicate:
    rule: Rule
    step: int
    """-1 for the rule's condition; the step index of a sequence."""
    key: Callable[[Event], Key] | None = None
    value: Callable[[Event], Any] | None = None


class DetectionEngine:
    def __init__(
        self,
        ruleset: RuleSet,
        *,
        lateness_ms: int = DEFAULT_LATENESS_MS,
        suppress_ms: int = DEFAULT_SUPPRESS_MS,
        clock: Callable[[], float] = time.time,
        integrity: bool = False,
        verify_hashes: bool = True,
        max_window_events: int = DEFAULT_MAX_EVENTS,
    ) -> None:
        self.ruleset = ruleset
        self.lateness_ms = lateness_ms
        self.max_window_events = max_window_events
        self.rules = ruleset.enabled
        self.suppressor = Suppressor(suppress_ms, clock)
        self.windows: dict[str, ThresholdWindows | SequenceWindows] = {}
        self.predicates: list[_Predicate] = []
        conditions: list[Condition] = []
        for rule in self.rules:
            for predicate, condition in self._predicates_of(rule):
                self.predicates.append(predicate)
                conditions.append(condition)
        self.matcher = compile_predicates(conditions)
        self._definitions = {
            r.id: hashlib.sha256(r.fingerprint().encode()).hexdigest()[:12] for r in self.rules
        }
        self.chain = ChainMonitor(verify_hashes) if integrity else None
        """The live hash-chain check (integrity alerts), when on."""
        self.watermarks = Watermarks()
        """The newest event time seen per tenant (closes suppression, expires windows)."""
        self.matched: dict[str, int] = {}
        """Rule id -> events matched, since the worker last read it."""

    def _predicates_of(self, rule: Rule) -> list[tuple[_Predicate, Condition]]:
        if rule.threshold is not None and rule.condition is not None:
            spec = rule.threshold
            self.windows[rule.id] = ThresholdWindows(spec, self.lateness_ms, self.max_window_events)
            value = field_getter(spec.field) if spec.field else None
            if value is not None and spec.aggregate == "sum":
                raw = value
                value = lambda e: _num(raw(e))  # noqa: E731
            return [(_Predicate(rule, -1, key_getter(spec.by), value), rule.condition)]
        if rule.sequence is not None:
            seq = rule.sequence
            self.windows[rule.id] = SequenceWindows(seq, self.lateness_ms, self.max_window_events)
            return [
                (
                    _Predicate(rule, i, key_getter(seq.by + ((step.join,) if step.join else ()))),
                    step.condition,
                )
                for i, step in enumerate(seq.steps)
            ]
        assert rule.condition is not None
        return [(_Predicate(rule, -1), rule.condition)]

    # Processing

    def process(self, events: list[Event]) -> list[Alert]:
        """Evaluate every rule over the batch; the alerts to publish (after suppression)."""
        alerts: list[Alert] = self._integrity(events) if self.chain is not None else []
        predicates = self.predicates
        watermarks = self.watermarks
        advance, newest = watermarks.advance, watermarks.by_tenant
        for event, hits in zip(events, self.matcher.match_batch(events), strict=True):
            ts = event.get("ts") or 0
            tenant = event.get("tenant") or ""
            if ts > newest.get(tenant, 0):
                advance(tenant, ts)
            if not hits:
                continue
            matched = event.setdefault("matched_rules", [])
            for index in hits:
                predicate = predicates[index]
                rule = predicate.rule
                if rule.id not in matched:
                    matched.append(rule.id)
                self.matched[rule.id] = self.matched.get(rule.id, 0) + 1
                fired = self._feed(predicate, event, ts)
                if fired is not None:
                    alert = self._alert(rule, event, fired)
                    if (kept := self.suppressor.offer(alert, rule.suppress_ms)) is not None:
                        alerts.append(kept)
        alerts.extend(self.suppressor.due(watermarks))
        return alerts

    def _integrity(self, events: list[Event]) -> list[Alert]:
        assert self.chain is not None
        alerts = []
        for event, kind, _detail in integrity_findings(self.chain, events):
            rule_id, title = INTEGRITY_RULES[kind]
            event.setdefault("matched_rules", []).append(rule_id)
            ts = event.get("ts") or 0
            alert = make_alert(
                rule_id,
                title,
                "critical",
                INTEGRITY_TAGS,
                event.get("tenant") or "",
                event.get("sandbox_id") or "",
                ts,
                ts,
                1,
                [event.get("event_id") or ""],
            )
            if (kept := self.suppressor.offer(alert, None)) is not None:
                alerts.append(kept)
        return alerts

    def _feed(self, predicate: _Predicate, event: Event, ts: int) -> Fired | None:
        rule = predicate.rule
        event_id = event.get("event_id") or ""
        if predicate.key is None:
            return Fired(ts, ts, 1, 1.0, [event_id])
        partition = event.get("kafka_partition") or 0
        key = predicate.key(event)
        windows = self.windows[rule.id]
        if isinstance(windows, ThresholdWindows):
            value = predicate.value(event) if predicate.value is not None else None
            return windows.add(key, ts, value, event_id, partition)
        return windows.add(predicate.step, key, ts, event_id, partition)

    @staticmethod
    def _alert(rule: Rule, event: Event, fired: Fired) -> Alert:
        return make_alert(
            rule.id,
            rule.title,
            rule.severity,
            rule.tags,
            event.get("tenant") or "",
            event.get("sandbox_id") or "",
            fired.first_ts,
            fired.last_ts,
            fired.count,
            fired.evidence,
        )

    def _stateful(self) -> dict[str, ThresholdWindows | SequenceWindows]:
        """State objects by persisted id: a window's id names its rule and definition, so
        the state of a rule that changed is not restored into the new definition."""
        states: dict[str, ThresholdWindows | SequenceWindows] = {
            f"{rule_id}{DEFINITION_SEPARATOR}{self._definitions[rule_id]}": windows
            for rule_id, windows in self.windows.items()
        }
        return states

    def expire(self) -> None:
        """Drop window state older than every window (call now and then)."""
        for state in self._stateful().values():
            state.expire(self.watermarks)
        if self.chain is not None:
            self.chain.expire(self.watermarks)
            self.chain.dirty.clear()  # kept in memory only (see pipeline/rules/integrity.py)

    @property
    def late_events(self) -> int:
        return sum(w.late for w in self.windows.values())

    @property
    def window_evictions(self) -> int:
        """Window entries dropped because a key held rules.max_window_events (a flood
        into one window: the events are still stored, the window forgets the oldest)."""
        return sum(w.evicted for w in self.windows.values())

    # State: carried over a reload, and persisted by the worker

    def adopt_state(self, old: DetectionEngine) -> list[str]:
        """Take the windows of unchanged rules and the held repeats from the engine this
        one replaces; returns the ids of the rules whose windows started empty."""
        self.suppressor = old.suppressor
        self.watermarks = old.watermarks
        if self.chain is not None and old.chain is not None:
            self.chain = old.chain
        old_rules = {r.id: r for r in old.rules}
        reset = []
        for rule_id in list(self.windows):
            previous = old_rules.get(rule_id)
            if previous is not None and previous.fingerprint() == self._rule(rule_id).fingerprint():
                self.windows[rule_id] = old.windows[rule_id]
            else:
                reset.append(rule_id)
        return reset

    def _rule(self, rule_id: str) -> Rule:
        return next(r for r in self.rules if r.id == rule_id)

    def take_state_changes(self) -> list[tuple[int, str, bytes | None]]:
        """(partition, state key, encoded state or None when gone) of every window key
        changed since the last call: the worker writes them to its Faust table."""
        out = []
        for state_id, states in self._stateful().items():
            for partition, key, state in states.take_changes():
                out.append((partition, STATE_SEPARATOR.join((state_id, *key)), state))
        return out

    def restore_state(self, partition: int, state_key: str, data: bytes) -> bool:
        """Load one persisted key; False for a rule that no longer exists or changed."""
        rule_id, *key = state_key.split(STATE_SEPARATOR)
        windows = self._stateful().get(rule_id)
        if windows is None:
            return False
        try:
            windows.restore(partition, tuple(key), data)
        except (ValueError, TypeError):
            return False
        return True

    def forget_partition(self, partition: int) -> None:
        for state in self._stateful().values():
            state.forget_partition(partition)
        if self.chain is not None:
            self.chain.forget_partition(partition)
