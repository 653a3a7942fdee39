"""Event-batch messages built from events encoded one at a time.

The publisher and the collector encode each event as it arrives (its dict is still in
the CPU's caches, and an event the schema cannot hold is refused at once), keep only the
bytes, and join a batch's bytes into one message when it is sent. The message is byte
for byte the Avro encoding of the whole ``audit_event_batch`` record, an array of one
block::

    header | sandbox_id | collector | sent_at | n | event 1 ... event n | 0

>>> from pipeline.schema.codec import AvroCodec
>>> from pipeline.schema.registry import SchemaRegistry
>>> from pipeline.sim.simulate import FleetSimulator
>>> codec = AvroCodec(SchemaRegistry.load())
>>> batches = EventBatchEncoder(codec, collector="doc/1")
>>> events = list(FleetSimulator(1, seed=1).events(3))
>>> [(message, n)] = batches.messages("sb-1", [batches.encode(e) for e in events],
...     max_bytes=1_000_000, sent_at=0)
>>> codec.decode(message).record["events"] == events
True
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import cavro

from pipeline.native import EVENT_BATCH_FINGERPRINT, speedups
from pipeline.schema.codec import AvroCodec
from pipeline.schema.registry import CAVRO_OPTIONS, without_logical_types

BATCH_SCHEMA = "audit_event_batch"
BATCH_FIELDS = ["sandbox_id", "collector", "sent_at", "events"]


def avro_long(value: int) -> bytes:
    """Avro's zig-zag varint of a long.

    >>> avro_long(0), avro_long(-1), avro_long(64)
    (b'\\x00', b'\\x01', b'\\x80\\x01')
    """
    n = (value << 1) ^ (value >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def avro_string(text: str) -> bytes:
    data = text.encode()
    return avro_long(len(data)) + data


def _refusing_with_value_errors(encode: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    def checked(event: Any) -> bytes:
        try:
            return encode(event)
        except KeyError as exc:  # cavro's word for a symbol its enum does not have
            raise ValueError(f"no enum symbol {exc} in the schema") from None

    return checked


class EventBatchEncoder:
    """Encodes events one at a time (`encode`) and joins them into messages (`messages`)."""

    def __init__(self, codec: AvroCodec, *, collector: str) -> None:
        version = codec.registry.latest(BATCH_SCHEMA)
        names = [f["name"] for f in version.raw["fields"]]
        if names != BATCH_FIELDS:  # a new batch layout needs this module changed too
            raise ValueError(f"{BATCH_SCHEMA} v{version.version}: fields {names}")
        self.header = codec.header(version)
        self._collector = avro_string(collector)
        self.native = speedups is not None and version.fingerprint == EVENT_BATCH_FINGERPRINT
        """Whether events are encoded by the C encoder (same bytes, ~10x faster)."""
        self.encode: Callable[[Any], bytes]
        """The Avro binary of one event: an item of a batch's array."""
        if self.native:
            assert speedups is not None
            self.encode = speedups.encode_event
        else:
            items = without_logical_types(version.raw)["fields"][3]["type"]["items"]
            self.encode = _refusing_with_value_errors(
                cavro.Schema(json.dumps(items), options=CAVRO_OPTIONS).binary_encode
            )

    def message(self, sandbox: str, encoded: Sequence[bytes], *, sent_at: int) -> bytes:
        """One message of the given encoded events."""
        count = avro_long(len(encoded)) if encoded else b""
        head = self.header + avro_string(sandbox) + self._collector + avro_long(sent_at)
        return b"".join((head, count, *encoded, b"\x00"))

    def messages(
        self, sandbox: str, encoded: Sequence[bytes], *, max_bytes: int, sent_at: int
    ) -> list[tuple[bytes, int]]:
        """(message, events in it) pairs, each at most max_bytes, in order; an event over
        max_bytes on its own is still sent alone (the broker's limit decides)."""
        # header, sandbox, collector, then sent_at and the count (10 bytes at most each)
        # and the array's end.
        overhead = len(self.header) + len(avro_string(sandbox)) + len(self._collector) + 21
        out: list[tuple[bytes, int]] = []
        start = 0
        size = overhead
        for i, event in enumerate(encoded):
            if i > start and size + len(event) > max_bytes:
                out.append((self.message(sandbox, encoded[start:i], sent_at=sent_at), i - start))
                start, size = i, overhead
            size += len(event)
        if start < len(encoded) or not out:
            part = encoded[start:]
            out.append((self.message(sandbox, part, sent_at=sent_at), len(part)))
        return out
