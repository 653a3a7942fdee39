"""The optional C speedups of the per-event hot paths (``pipeline/_native.c``).

The extension is built by ``pip install`` where a C compiler and the OpenSSL headers are
found; elsewhere the install goes on without it and the pure-Python code runs instead
(the same bytes and hashes, several times slower per event). It does these things:

* ``seal`` and ``link``: the hash chain (``pipeline/chain/hashing.py`` specifies it);
* ``encode_event``, ``seal_encode``, ``encode_event_batch`` and ``decode_event_batch``:
  the Avro codec of ``audit_event_batch`` v2, used only for the schema version whose
  fingerprint is `EVENT_BATCH_FINGERPRINT` (the worker's decoder reads untrusted bytes:
  every read is bounds-checked, and tests fuzz it).

Set ``AUDITPIPE_NATIVE=0`` to run the pure-Python code although the extension is built
(benchmarks compare the two this way; tests compare their output).

>>> isinstance(available(), bool)
True
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Protocol, cast

EVENT_BATCH_FINGERPRINT = bytes.fromhex("a93609325535e89a")
"""CRC-64-AVRO fingerprint of the event-batch schema the C encoder writes (v2); a v1
message is read by the generic decoder, resolved to v2."""


class Speedups(Protocol):
    """What the extension offers (its stub: ``pipeline/_native.pyi``)."""

    def encode_event_batch(
        self, sandbox_id: str, collector: str, sent_at: int, events: Sequence[Any]
    ) -> bytes: ...
    def encode_event(self, event: Any) -> bytes: ...
    def seal_encode(self, event: Any, seq: int, prev_hash: bytes) -> bytes: ...
    def link(self, prev_hash: bytes, event: Any) -> bytes: ...
    def canonical(self, event: Any) -> bytes: ...
    def decode_event_batch(self, body: Any, max_events: int = -1) -> Any: ...
    def seal(self, events: Sequence[Any], seq: int, prev_hash: bytes) -> tuple[int, bytes]: ...


def _load() -> Speedups | None:
    if os.environ.get("AUDITPIPE_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    try:
        from pipeline import _native
    except ImportError:  # built without a C compiler or OpenSSL headers
        return None
    return cast(Speedups, _native)


speedups = _load()
"""The extension module, or None where the pure-Python code runs."""


def available() -> bool:
    """Whether the C speedups run in this process."""
    return speedups is not None
