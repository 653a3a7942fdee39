"""The schemas auditpipe knows, found by their fingerprints.

Every ``schemas/<name>.v<N>.avsc`` file is one version of one message type. A message
names its writer schema by the CRC-64-AVRO fingerprint of the schema's Parsing Canonical
Form (Avro single-object encoding), so a reader knows which version wrote it and resolves
it to the newest version it has: a v2 reader reads v1 data.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cavro
from fastavro import parse_schema
from fastavro.schema import fingerprint, to_parsing_canonical_form

from pipeline.native import EVENT_BATCH_FINGERPRINT, speedups
from pipeline.resources import resource_path

_FILE_NAME = re.compile(r"^(?P<name>[a-z0-9_]+)\.v(?P<version>\d+)\.avsc$")

CAVRO_OPTIONS = cavro.DEFAULT_OPTIONS.replace(
    record_decodes_to_dict=True,
    logical_types=(),  # timestamps stay integers, as in `plain`
    record_allow_extra_fields=True,
    record_encode_use_defaults=True,
)
"""Records as plain dicts both ways, like fastavro: a missing field takes its default
and keys the schema does not have are left out."""


class UnknownSchemaError(LookupError):
    """A message names a schema (fingerprint or registry id) that this reader does not have."""


@dataclass(frozen=True)
class SchemaVersion:
    """One version of one message type, parsed for fast reading and writing."""

    name: str
    version: int
    raw: dict[str, Any] = field(repr=False)
    fingerprint: bytes
    """8 bytes, little-endian CRC-64-AVRO of the Parsing Canonical Form."""
    parsed: Any = field(repr=False)
    plain: Any = field(repr=False)
    """Parsed without logical types: timestamps stay integers (same bytes, faster)."""
    fast: cavro.Schema = field(repr=False)
    """The same, for cavro, which encodes and decodes our records about twice as fast as
    fastavro (see benchmarks/RESULTS.md); fastavro stays for canonical forms and
    fingerprints."""
    fast_checked: cavro.Schema = field(repr=False)
    """For decoding ``body + END_MARK``: the record, then the mark (see `checked`)."""
    encode_body: Callable[[Any], bytes] = field(repr=False)
    """The Avro binary body of a record: cavro's encoder, or for the event batch the C
    one where it is built (`pipeline.native`; the same bytes, ~13x faster)."""
    decode_body: Callable[[Any, int], Any] | None = field(repr=False, default=None)
    """The C decoder of a batch body: (body, max_events or -1) -> record."""
    """For the event batch where the C code is built: a body (bytes-like, all of it) to
    its record, the same dicts cavro reads; ValueError on corrupt bytes."""


def without_logical_types(node: Any) -> Any:
    """A schema (or part of one) with its logical types dropped: the same bytes, plain values."""
    if isinstance(node, dict):
        return {k: without_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [without_logical_types(item) for item in node]
    return node


END_MARK = bytes(range(1, 9))
"""Appended to a body before decoding it. cavro does not tell where a record ended, so
the reader schema reads the record and then 8 more bytes: they are this mark exactly when
the body ended where its record did. Bytes after the record shift the mark and show up
(the mark's bytes all differ, so no shift of it matches itself), unless they begin with
the mark itself."""


def checked(plain: Any) -> dict[str, Any]:
    """A record of the schema's record and the end mark."""
    return {
        "type": "record",
        "name": "CheckedBody",
        "namespace": "dev.auditpipe.internal",
        "fields": [
            {"name": "record", "type": plain},
            {"name": "end", "type": {"type": "fixed", "name": "EndMark", "size": len(END_MARK)}},
        ],
    }


def _native_event_batch(record: Any) -> bytes:
    assert speedups is not None
    return speedups.encode_event_batch(
        record["sandbox_id"], record.get("collector", ""), record["sent_at"], record["events"]
    )


def make_version(name: str, version: int, raw: dict[str, Any]) -> SchemaVersion:
    canonical = to_parsing_canonical_form(copy.deepcopy(raw))
    plain = without_logical_types(copy.deepcopy(raw))
    # fastavro gives the fingerprint's bytes in little-endian order already, as hex.
    fp = bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
    fast = cavro.Schema(json.dumps(plain), options=CAVRO_OPTIONS)
    native = speedups is not None and fp == EVENT_BATCH_FINGERPRINT
    return SchemaVersion(
        name=name,
        version=version,
        raw=raw,
        fingerprint=fp,
        parsed=parse_schema(copy.deepcopy(raw)),
        plain=parse_schema(copy.deepcopy(plain)),
        fast=fast,
        fast_checked=cavro.Schema(json.dumps(checked(plain)), options=CAVRO_OPTIONS),
        encode_body=_native_event_batch if native else fast.binary_encode,
        decode_body=speedups.decode_event_batch if speedups is not None and native else None,
    )


class SchemaRegistry:
    """All shipped versions of all message types, by name and by fingerprint.

    >>> reg = SchemaRegistry.load()
    >>> reg.latest("audit_event_batch").version >= 1
    True
    """

    def __init__(self, versions: list[SchemaVersion]) -> None:
        self._by_fingerprint = {v.fingerprint: v for v in versions}
        self._latest: dict[str, SchemaVersion] = {}
        for v in sorted(versions, key=lambda v: v.version):
            self._latest[v.name] = v

    @classmethod
    def load(cls, folder: Path | None = None) -> SchemaRegistry:
        folder = folder or resource_path("schemas")
        versions = []
        for path in sorted(folder.glob("*.avsc")):
            match = _FILE_NAME.match(path.name)
            if match is None:
                raise ValueError(f"{path}: schema files are named <type>.v<N>.avsc")
            raw = json.loads(path.read_text())
            versions.append(make_version(match["name"], int(match["version"]), raw))
        return cls(versions)

    def with_version(self, version: SchemaVersion) -> SchemaRegistry:
        """A registry that also knows ``version`` (used by tests and schema tooling)."""
        return SchemaRegistry([*self._by_fingerprint.values(), version])

    def latest(self, name: str) -> SchemaVersion:
        try:
            return self._latest[name]
        except KeyError:
            raise UnknownSchemaError(f"no schema named {name!r}") from None

    def by_fingerprint(self, fp: bytes) -> SchemaVersion:
        try:
            return self._by_fingerprint[fp]
        except KeyError:
            raise UnknownSchemaError(f"unknown schema fingerprint {fp.hex()}") from None

    def versions(self) -> list[SchemaVersion]:
        return sorted(self._by_fingerprint.values(), key=lambda v: (v.name, v.version))
