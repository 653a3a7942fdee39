"""Confluent wire format through a schema registry's REST API.

The registry here is a minimal in-process HTTP server speaking the documented API
(POST /subjects/{subject}/versions, GET /schemas/ids/{id}); no registry server ships on
the package registries this project can use.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from pipeline.schema.codec import AvroCodec, DecodeError
from pipeline.schema.confluent import ConfluentRegistry, RegistryStopped
from pipeline.schema.registry import SchemaRegistry
from pipeline.sim.simulate import FleetSimulator


class Registry(BaseHTTPRequestHandler):
    schemas: ClassVar[list[str]] = []
    subjects: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if body["schema"] not in self.schemas:
            self.schemas.append(body["schema"])
            self.subjects.append(self.path.split("/")[2])
        self._reply(200, {"id": self.schemas.index(body["schema"]) + 1})

    def do_GET(self) -> None:
        schema_id = int(self.path.rsplit("/", 1)[1])
        if 1 <= schema_id <= len(self.schemas):
            self._reply(200, {"schema": self.schemas[schema_id - 1]})
        else:
            self._reply(404, {"error_code": 40403, "message": "Schema not found"})

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def registry_url() -> Iterator[str]:
    Registry.schemas, Registry.subjects = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_wire_format_roundtrip_registers_once(registry_url: str) -> None:
    local = SchemaRegistry.load()
    codec = AvroCodec(local, ConfluentRegistry(registry_url, local))
    events = list(FleetSimulator(2, seed=5).events(20))
    record = {"sandbox_id": "sb", "collector": "t", "sent_at": 5, "events": events}

    first = codec.encode("audit_event_batch", record)
    second = codec.encode("audit_event_batch", record)

    assert first[:5] == b"\x00\x00\x00\x00\x01" == second[:5]
    assert Registry.subjects == ["dev.auditpipe.EventBatch"]
    # A fresh reader (no cache) resolves the id through the registry.
    reader = AvroCodec(local, ConfluentRegistry(registry_url, local))
    decoded = reader.decode(first)
    assert decoded.writer.fingerprint == local.latest("audit_event_batch").fingerprint
    assert decoded.record == record


def test_unknown_schema_id_is_a_decode_error(registry_url: str) -> None:
    local = SchemaRegistry.load()
    codec = AvroCodec(local, ConfluentRegistry(registry_url, local))
    with pytest.raises(DecodeError) as info:
        codec.decode(b"\x00\x00\x00\x00\x63" + b"\x02")
    assert info.value.reason == "unknown_schema"


class Flaky(Registry):
    """Down (connection dropped, then 503) for the first requests, then the registry."""

    failures: ClassVar[list[str]] = []
    gets: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.gets.append(self.path)
        if self.failures:
            failure = self.failures.pop(0)
            if failure == "drop":
                self.close_connection = True
                self.connection.close()
                return
            self._reply(int(failure), {"error_code": 50001, "message": "unavailable"})
            return
        super().do_GET()


def test_a_registry_outage_holds_the_message_and_only_a_404_is_unknown() -> None:
    """An outage (dropped connections, 5xx, a 401 until the credentials are fixed) is
    waited out: the message decodes once the registry answers, never a dead letter; a
    made-up id asked again is not sent to the registry twice."""
    Flaky.schemas, Flaky.subjects = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        local = SchemaRegistry.load()
        record = {"sandbox_id": "sb", "collector": "t", "sent_at": 5, "events": []}
        message = AvroCodec(local, ConfluentRegistry(url, local)).encode(
            "audit_event_batch", record
        )
        Flaky.failures = ["drop", "503", "500", "401"]
        resolver = ConfluentRegistry(
            url, local, retry_initial_s=0.01, retry_max_s=0.02, stopping=threading.Event()
        )
        reader = AvroCodec(local, resolver)

        assert reader.decode(message).record == record
        assert resolver.retries_total == 4 and Flaky.failures == []

        Flaky.gets.clear()
        for _ in range(3):
            with pytest.raises(DecodeError) as info:
                reader.decode(b"\x00\x00\x00\x00\x63\x02")
            assert info.value.reason == "unknown_schema"
        assert resolver.retries_total == 4
        assert Flaky.gets == ["/schemas/ids/99"]
    finally:
        server.shutdown()


def test_a_stopping_worker_ends_the_wait() -> None:
    local = SchemaRegistry.load()
    stopping = threading.Event()
    stopping.set()
    resolver = ConfluentRegistry("http://127.0.0.1:9", local, timeout_s=0.5, stopping=stopping)
    with pytest.raises(RegistryStopped):
        resolver.version_for(7)
    assert resolver.retries_total == 1


def test_a_command_does_not_wait_for_a_registry_that_does_not_answer() -> None:
    """Only the worker waits; a command gets one line and exit 3 (cli._unavailable)."""
    from pipeline.cli import _unavailable
    from pipeline.config import Settings
    from pipeline.schema.confluent import RegistryUnavailable

    local = SchemaRegistry.load()
    resolver = ConfluentRegistry("http://127.0.0.1:9", local, timeout_s=0.5)
    with pytest.raises(RegistryUnavailable) as info:
        resolver.version_for(7)
    assert resolver.retries_total == 0
    settings = Settings(kafka={"schema_registry_url": "http://127.0.0.1:9"})
    line = _unavailable(info.value, settings)
    assert line is not None and line.startswith("the schema registry at http://127.0.0.1:9 ")
