"""The worker's Prometheus metrics, served at ``/metrics`` on ``worker.web_port``.

The event counters add up: every event the worker takes in is stored, deduplicated,
dropped by the level policy, collapsed into a stored repeat or dead-lettered (or still in
flight)::

    auditpipe_events_in_total = auditpipe_events_stored_total
        + auditpipe_events_deduplicated_total + sum(auditpipe_events_dropped_by_policy_total)
        + auditpipe_events_collapsed_total + sum(auditpipe_deadletter_total)

A message that cannot be decoded at all counts as one event in and one dead letter.
Events of a message deferred by the fairness stage are not in yet: they are counted in
``auditpipe_events_deferred_total``, and in ``auditpipe_events_in_total`` when the
deferred path takes them.
A retried insert is counted in ``auditpipe_sink_insert_retries_total``, never as dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from time import perf_counter
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

NAMESPACE = "auditpipe"
"""Every metric is ``auditpipe_<name>`` (Prometheus naming: counters end in ``_total``,
durations in ``_seconds``)."""
BATCH_BUCKETS = (1, 10, 100, 1_000, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000)
STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_in = Counter(
            "events_in",
            "Events taken in (an undecodable message counts as one)",
            namespace=NAMESPACE,
            registry=r,
        )
        self.events_stored = Counter(
            "events_stored", "Events stored in ClickHouse", namespace=NAMESPACE, registry=r
        )
        self.events_deduplicated = Counter(
            "events_deduplicated",
            "Events dropped as duplicates inside the window",
            namespace=NAMESPACE,
            registry=r,
        )
        self.events_collapsed = Counter(
            "events_collapsed",
            "Repeats folded into a stored event's repeat_count (the collapse stage)",
            namespace=NAMESPACE,
            registry=r,
        )
        self.events_deferred = Counter(
            "events_deferred",
            "Events over a rate limit moved to the deferred topic (counted in again when "
            "taken from it), by why: sandbox_rate, tenant_rate, behind_deferred",
            ["reason"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.deferred_keys = Gauge(
            "deferred_keys",
            "Sandboxes (Kafka keys) with deferred messages not yet stored",
            namespace=NAMESPACE,
            registry=r,
        )
        self.events_dropped_by_policy = Counter(
            "events_dropped_by_policy",
            "Events below the level policy, counted in the rollup",
            ["level", "category"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.deadletter = Counter(
            "deadletter",
            "Dead letters sent, by reason",
            ["reason"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.events_unknown_sandbox = Counter(
            "events_unknown_sandbox",
            "Events (stored) from sandboxes the inventory lacks",
            namespace=NAMESPACE,
            registry=r,
        )
        self.redactions = Counter(
            "redactions",
            "Values masked by the redact stage, by rule",
            ["rule"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.sink_insert_retries = Counter(
            "sink_insert_retries",
            "ClickHouse inserts retried (not dropped)",
            namespace=NAMESPACE,
            registry=r,
        )
        self.schema_registry_retries = Counter(
            "schema_registry_retries",
            "Schema registry requests retried while it did not answer (the partition waits)",
            namespace=NAMESPACE,
            registry=r,
        )
        self.sink_progress_rejected = Counter(
            "sink_progress_rejected",
            "Progress rows ignored: beyond a partition's end or with a wrong MAC (forged?)",
            namespace=NAMESPACE,
            registry=r,
        )
        self.zombie_inserts_cancelled = Counter(
            "zombie_inserts_cancelled",
            "Inserts of a worker frozen past its session, cancelled by the worker that "
            "took its partitions over",
            namespace=NAMESPACE,
            registry=r,
        )
        self.messages_already_stored = Counter(
            "messages_already_stored",
            "Messages skipped after a restart because their rows were stored before it",
            namespace=NAMESPACE,
            registry=r,
        )
        self.inventory_unreadable = Counter(
            "inventory_unreadable_records",
            "Inventory records that could not be decoded (their sandboxes count as unknown)",
            namespace=NAMESPACE,
            registry=r,
        )
        self.inventory_sandboxes = Gauge(
            "inventory_sandboxes",
            "Sandboxes the worker's inventory holds",
            namespace=NAMESPACE,
            registry=r,
        )
        self.checkpoints = Counter(
            "checkpoints", "Signed chain-head checkpoints written", namespace=NAMESPACE, registry=r
        )
        self.alerts = Counter(
            "alerts",
            "Alerts published, by rule and severity",
            ["rule_id", "severity"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.rule_matches = Counter(
            "rule_matches",
            "Events a detection rule matched, by rule",
            ["rule_id"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.alerts_suppressed = Counter(
            "alerts_suppressed",
            "Repeat alerts folded into a summary alert",
            namespace=NAMESPACE,
            registry=r,
        )
        self.rule_late_events = Counter(
            "rule_late_events",
            "Events too late for a threshold or sequence window (beyond rules.lateness_s)",
            namespace=NAMESPACE,
            registry=r,
        )
        self.rule_window_evictions = Counter(
            "rule_window_evictions",
            "Window entries dropped because one key held rules.max_window_events",
            namespace=NAMESPACE,
            registry=r,
        )
        self.rules_enabled = Gauge(
            "rules_enabled", "Detection rules in force", namespace=NAMESPACE, registry=r
        )
        self.rules_reload_failures = Counter(
            "rules_reload_failures",
            "Rule reloads refused (the old rules stayed)",
            namespace=NAMESPACE,
            registry=r,
        )
        self.batch_events = Histogram(
            "batch_events",
            "Events per processed batch",
            buckets=BATCH_BUCKETS,
            namespace=NAMESPACE,
            registry=r,
        )
        self.stage_seconds = Histogram(
            "stage_duration_seconds",
            "Time spent per batch, by stage",
            ["stage"],
            buckets=STAGE_BUCKETS,
            namespace=NAMESPACE,
            registry=r,
        )
        self._stage_timers: dict[str, Any] = {}
        self.consumer_lag = Gauge(
            "consumer_lag",
            "Messages in the partition not yet processed",
            ["partition"],
            namespace=NAMESPACE,
            registry=r,
        )
        self._counters = {
            name: metric for name, metric in vars(self).items() if isinstance(metric, Counter)
        }
        """Metric name (its attribute) -> counter: what ``drain`` may count."""
        self._gauges = {
            name: metric for name, metric in vars(self).items() if isinstance(metric, Gauge)
        }

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        started = perf_counter()
        try:
            yield
        finally:
            timer = self._stage_timers.get(stage)
            if timer is None:  # labels() costs microseconds: look each stage up once
                timer = self._stage_timers[stage] = self.stage_seconds.labels(stage)
            timer.observe(perf_counter() - started)

    def drain(
        self,
        counts: Mapping[tuple[str, tuple[tuple[str, str], ...]], int],
        gauges: Mapping[str, float],
    ) -> None:
        """What the stages counted on a batch's context (``BatchContext.counts``, by
        metric name without prefix and ``_total``), and the gauges they set."""
        for (name, labels), n in counts.items():
            counter = self._counters[name]
            (counter.labels(**dict(labels)) if labels else counter).inc(n)
        for name, value in gauges.items():
            self._gauges[name].set(value)

    def add_counts(self, counts: Mapping[str, int], counter: Counter, label: str) -> None:
        for value, n in counts.items():
            if n:
                counter.labels(**{label: value}).inc(n)

    def exposition(self, refresh_lag: Callable[[], Mapping[int, int]] | None = None) -> bytes:
        """The text format, after refreshing the lag gauges."""
        if refresh_lag is not None:
            for partition, lag in refresh_lag().items():
                self.consumer_lag.labels(str(partition)).set(lag)
        return bytes(generate_latest(self.registry))
