"""Running the example events that ship with each rule (``auditpipe rules test``).

An example under ``examples.match`` must fire the rule; one under ``examples.no_match``
must not. For an event rule an example is one event; for a threshold or sequence rule it
is ``{events: [...]}``, fed in order to a fresh engine. Fields an example leaves out get
plain defaults (tenant ``example``, level ``info``, outcome ``success``, ...); ``ts`` is
milliseconds from an arbitrary start.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from pipeline.rules.engine import DetectionEngine
from pipeline.rules.language import Example, Rule, RuleSet
from pipeline.schema.event import Event, parse_ts

EXAMPLE_EPOCH_MS = 1_795_000_000_000
_ACTOR = {
    "user": "runner",
    "uid": 1000,
    "pid": 4242,
    "ppid": 1,
    "process": "",
    "cmdline": "",
    "parent_process": "",
    "parent_cmdline": "",
}


def recorded_event(fields: dict[str, Any], index: int) -> Event:
    """An event from a file of real events (``rules test --events``), completed like an
    example's but keeping its own time: ``ts`` is an event time (epoch milliseconds or
    RFC 3339), so windows and sequences see the gaps the events really had. An event
    without ``ts`` gets an example time. Raises ``InvalidEvent`` for a ``ts`` that is
    neither."""
    event = example_event({k: v for k, v in fields.items() if k != "ts"}, index)
    if fields.get("ts") is not None:
        event["ts"] = parse_ts(fields["ts"])
    return event


def example_event(fields: dict[str, Any], index: int) -> Event:
    """An example's fields completed into a whole event (as the enrich stage leaves it)."""
    event: Event = {
        "event_id": f"example-{index}",
        "tenant": "example",
        "sandbox_id": "sb-example",
        "seq": index + 1,
        "level": "info",
        "outcome": "success",
        "object": None,
        "bytes": None,
        "attributes": {},
        "environment": "dev",
        "labels": {},
        "kafka_partition": 0,
        **{k: v for k, v in fields.items() if k not in ("actor", "ts")},
    }
    event["actor"] = {**_ACTOR, **(fields.get("actor") or {})}
    event["ts"] = EXAMPLE_EPOCH_MS + int(fields.get("ts", index * 1000))
    event["attributes"] = {str(k): str(v) for k, v in (event["attributes"] or {}).items()}
    return event


def example_events(example: Example) -> list[Event]:
    raw = example.event.get("events")
    items = raw if isinstance(raw, list) else [example.event]
    return [example_event(dict(item), i) for i, item in enumerate(items)]


@dataclass(frozen=True)
class ExampleResult:
    rule: Rule
    example: Example
    expected: bool
    fired: bool

    @property
    def ok(self) -> bool:
        return self.expected == self.fired

    def __str__(self) -> str:
        want = "fire" if self.expected else "stay silent"
        did = "fired" if self.fired else "stayed silent"
        return f"{self.rule.path}:{self.example.line}: {self.rule.id}: should {want}, {did}"


def run_examples(ruleset: RuleSet) -> list[ExampleResult]:
    """Every example of every rule (enabled or not), each on a fresh engine."""
    results = []
    for rule in ruleset.rules:
        alone = RuleSet([replace(rule, enabled=True)], ruleset.lists)
        for expected, examples in ((True, rule.positive), (False, rule.negative)):
            for example in examples:
                engine = DetectionEngine(alone, suppress_ms=0)
                alerts = engine.process(example_events(example))
                results.append(ExampleResult(rule, example, expected, bool(alerts)))
    return results
