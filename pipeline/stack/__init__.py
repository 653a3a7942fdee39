"""The embedded local stack: a real Kafka broker and a real ClickHouse server, no Docker.

``auditpipe stack up`` starts both (data and logs under ``$AUDITPIPE_HOME``), waits until
each answers, and leaves them running; ``stack down`` stops them; ``stack status`` tells.
``stack up --secure`` runs them secured (``certs.py``, ``kafka.py``, ``clickhouse.py``) and
writes the client settings that reach them to ``$AUDITPIPE_HOME/tls/client.yaml``
(SCRAM over TLS) and ``client-mtls.yaml`` (mutual TLS).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import yaml

from pipeline.config import Settings
from pipeline.stack.certs import StackTLS
from pipeline.stack.clickhouse import ADMIN_USER, ClickHouseServer
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
        """Secured when ``stack.secure`` is set, or when the running stack was started
        secured (``down`` and ``status`` need not be told)."""
        self.settings = settings
        self.tls_root = settings.home.resolve() / "tls"
        self.marker = self.tls_root / "stack-secured"
        secure = settings.stack.secure or self.marker.exists()
        self.tls = StackTLS(self.tls_root) if secure else None
        self.kafka = KafkaBroker(settings, self.tls)
        self.clickhouse = ClickHouseServer(settings, self.tls)

    def up(self) -> None:
        """Start whatever is not running and wait until both answer."""
        if self.tls is not None:
            self.tls.ensure()
            self.marker.touch()
        services: tuple[_Service, ...] = (self.clickhouse, self.kafka)
        started = [service.start() for service in services]
        for service, was_started in zip(services, started, strict=True):
            waited = service.wait_ready()
            how = f"started in {waited:.1f} s" if was_started else "already running"
            print(f"{service.process.name}: {how}, {service.endpoint}", flush=True)
        if self.tls is not None:
            scram, mtls = self.write_client_settings()
            print(f"secured: clients use AUDITPIPE_CONFIG={scram} (SCRAM over TLS) or {mtls}")

    def write_client_settings(self) -> tuple[Path, Path]:
        """The YAML settings of a client of the secured stack: SCRAM over TLS, and
        mutual TLS. They name files (CA, key, password files), never a secret."""
        assert self.tls is not None
        tls, stack = self.tls, self.settings.stack
        clickhouse = {
            "url": self.clickhouse.endpoint,
            "user": ADMIN_USER,
            "ca_file": str(tls.ca),
            "password_file": str(tls.password_file("clickhouse")),
        }
        scram = {
            "kafka": {
                "bootstrap": self.kafka.endpoint,
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "SCRAM-SHA-512",
                "username": "auditpipe",
                "password_file": str(tls.password_file("kafka-client")),
                "ssl_cafile": str(tls.ca),
            },
            "clickhouse": clickhouse,
        }
        mtls = {
            "kafka": {
                "bootstrap": f"127.0.0.1:{stack.kafka_mtls_port}",
                "security_protocol": "SSL",
                "ssl_cafile": str(tls.ca),
                "ssl_certfile": str(tls.client_cert),
                "ssl_keyfile": str(tls.client_key),
            },
            "clickhouse": clickhouse
            | {"client_cert": str(tls.client_cert), "client_key": str(tls.client_key)},
        }
        paths = (self.tls_root / "client.yaml", self.tls_root / "client-mtls.yaml")
        for path, content in zip(paths, (scram, mtls), strict=True):
            path.write_text(yaml.safe_dump(content, sort_keys=False))
        return paths

    def down(self) -> None:
        for service in (self.kafka, self.clickhouse):
            stopped = service.process.stop()
            print(f"{service.process.name}: {'stopped' if stopped else 'was not running'}")
        self.marker.unlink(missing_ok=True)

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
