"""The forwarder's Prometheus metrics (served on ``forward.metrics_port``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

OUTCOMES = ("delivered", "filtered", "dead_lettered")


class ForwardMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.records = Counter(
            "auditpipe_forward_records",
            "Alerts taken from the topic, by destination and outcome (delivered, filtered "
            "by the destination's settings, dead_lettered with a reason)",
            ["destination", "outcome"],
            registry=self.registry,
        )
        self.retries = Counter(
            "auditpipe_forward_retries",
            "Deliveries tried again while the destination was unavailable (never dropped)",
            ["destination"],
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "auditpipe_forward_batch_seconds",
            "Time to deliver one batch, retries included",
            ["destination"],
            registry=self.registry,
        )
