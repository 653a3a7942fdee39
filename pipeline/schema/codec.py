"""Self-describing Avro messages: single-object encoding, or the Confluent wire format.

Single-object encoding (the default)::

    C3 01 | 8-byte little-endian CRC-64-AVRO fingerprint | Avro binary body

Confluent wire format (when a schema registry is configured)::

    00 | 4-byte big-endian schema id | Avro binary body

>>> from pipeline.schema.registry import SchemaRegistry
>>> codec = AvroCodec(SchemaRegistry.load())
>>> data = codec.encode("dead_letter", {"reason": "decode_error", "detail": "",
...     "source_topic": "audit.events", "source_partition": 0, "source_offset": 7,
...     "original": b"x", "key": None, "failed_at": 0, "event_id": None})
>>> data[:2] == b"\\xc3\\x01"
True
>>> codec.decode(data).record["source_offset"]
7
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from pipeline.schema.registry import END_MARK, SchemaRegistry, SchemaVersion, UnknownSchemaError

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
TOO_MANY = "too many events"
"""How the C decoder's error for a batch over its limit begins."""
CONFLUENT_MAGIC = b"\x00"


class DecodeError(ValueError):
    """The bytes are not a message this reader can decode; ``reason`` is a short label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class SchemaIdResolver(Protocol):
    """A schema registry client (Confluent wire format)."""

    retries_total: int
    """Requests retried because the registry did not answer (a running total)."""

    def id_for(self, version: SchemaVersion) -> int: ...
    def version_for(self, schema_id: int) -> SchemaVersion: ...


@dataclass(frozen=True)
class Decoded:
    writer: SchemaVersion
    """The schema version that wrote the message."""
    record: Any
    """The record, resolved to the reader's newest version of that type."""


class AvroCodec:
    """Encodes with the newest version of a type; decodes any version it knows."""

    def __init__(self, registry: SchemaRegistry, resolver: SchemaIdResolver | None = None):
        self.registry = registry
        self.resolver = resolver
        self._resolved: dict[tuple[bytes, bytes], Any] = {}

    def header(self, version: SchemaVersion) -> bytes:
        """The bytes before a message's body that name its schema version."""
        if self.resolver is None:
            return SINGLE_OBJECT_MAGIC + version.fingerprint
        return CONFLUENT_MAGIC + self.resolver.id_for(version).to_bytes(4, "big")

    def encode(self, name: str, record: Any) -> bytes:
        version = self.registry.latest(name)
        header = self.header(version)
        try:
            return header + version.encode_body(record)
        except KeyError as exc:  # cavro's word for a symbol its enum does not have
            raise ValueError(f"{name}: no enum symbol {exc} in the schema") from None

    def writer_of(self, data: bytes) -> SchemaVersion:
        """The schema version named by the message's header."""
        if data[:2] == SINGLE_OBJECT_MAGIC and len(data) >= 10:
            try:
                return self.registry.by_fingerprint(bytes(data[2:10]))
            except UnknownSchemaError as exc:
                raise DecodeError("unknown_schema", str(exc)) from None
        if data[:1] == CONFLUENT_MAGIC and len(data) >= 5 and self.resolver is not None:
            try:
                return self.resolver.version_for(int.from_bytes(data[1:5], "big"))
            except UnknownSchemaError as exc:
                raise DecodeError("unknown_schema", str(exc)) from None
        raise DecodeError("not_avro", f"no known header in the first bytes {bytes(data[:10])!r}")

    def decode(self, data: bytes, max_items: int = -1) -> Decoded:
        """Decode one message, resolving its writer schema to the newest reader version.
        With ``max_items`` >= 0, a batch of more events is a ``too_many_events``
        DecodeError (refused before the events are built where the C decoder runs)."""
        writer = self.writer_of(data)
        reader = self.registry.latest(writer.name)
        header = 10 if data[:1] == SINGLE_OBJECT_MAGIC[:1] else 5
        if reader is writer and writer.decode_body is not None:
            try:
                return Decoded(writer, writer.decode_body(memoryview(data)[header:], max_items))
            except ValueError as exc:
                reason = "too_many_events" if str(exc).startswith(TOO_MANY) else "corrupt_body"
                raise DecodeError(reason, str(exc)) from None
        schema = writer.fast_checked if reader is writer else self._resolve(writer, reader)
        try:
            checked = schema.binary_decode(bytes(data[header:]) + END_MARK)
        except Exception as exc:  # cavro raises many kinds on corrupt bodies
            raise DecodeError("corrupt_body", f"{type(exc).__name__}: {exc}") from None
        if checked["end"] != END_MARK:
            raise DecodeError("corrupt_body", "bytes after the record")
        items = checked["record"].get("events") if isinstance(checked["record"], dict) else None
        if max_items >= 0 and items is not None and len(items) > max_items:
            raise DecodeError(
                "too_many_events", f"{TOO_MANY}: more than {max_items} in one message"
            )
        return Decoded(writer, checked["record"])

    def _resolve(self, writer: SchemaVersion, reader: SchemaVersion) -> Any:
        key = (writer.fingerprint, reader.fingerprint)
        if key not in self._resolved:
            self._resolved[key] = reader.fast_checked.reader_for_writer(writer.fast_checked)
        return self._resolved[key]
