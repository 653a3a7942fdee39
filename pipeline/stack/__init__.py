"""The embedded local stack: a real Kafka broker and a real ClickHouse server, no Docker.

``auditpipe stack up`` starts both (data and logs under ``$AUDITPIPE_HOME``), waits until
each answers, and leaves them running; ``stack down`` stops them; ``stack status`` tells.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pipeline.config import Settings
from pipeline.stack.clickhouse import ClickHouseServer
from pipeline.stack.kafka import KafkaBroker
from pipeline.stack.process import ManagedProcess, StackError

__all__ = ["LocalStack", "ServiceStatus", "StackError"]


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    endpoint: str
    answering: bool


class _Service(Protocol):
    @property
    def endpoint(self) -> str: ...
    @property
    def process(self) -> ManagedProcess: ...
    def start(self) -> bool: ...
    def wait_ready(self) -> float: ...


class LocalStack:
    def __init__(self, settings: Settings) -> None:
        self.kafka = KafkaBroker(settings)
        self.clickhouse = ClickHouseServer(settings)

    def up(self) -> None:
        """Start whatever is not running and wait until both answer."""
        services: tuple[_Service, ...] = (self.clickhouse, self.kafka)
        started = [service.start() for service in services]
        for service, was_started in zip(services, started, strict=True):
            waited = service.wait_ready()
            how = f"started in {waited:.1f} s" if was_started else "already running"
            print(f"{service.process.name}: {how}, {service.endpoint}", flush=True)

    def down(self) -> None:
        for service in (self.kafka, self.clickhouse):
            stopped = service.process.stop()
            print(f"{service.process.name}: {'stopped' if stopped else 'was not running'}")

    def status(self) -> list[ServiceStatus]:
        return [
            ServiceStatus(
                "kafka", self.kafka.process.pid(), self.kafka.endpoint, self.kafka._answers()
            ),
            ServiceStatus(
                "clickhouse",
                self.clickhouse.process.pid(),
                self.clickhouse.endpoint,
                self.clickhouse._answers(),
            ),
        ]
