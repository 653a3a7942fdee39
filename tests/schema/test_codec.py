"""Schema code: single-object encoding, fingerprints, and schema evolution (v2 reads v1)."""

from __future__ import annotations

import copy
import struct
from typing import Any

import pytest

from pipeline.schema.codec import AvroCodec, DecodeError
from pipeline.schema.registry import SchemaRegistry, make_version
from pipeline.sim.simulate import FleetSimulator

REGISTRY = SchemaRegistry.load()
NEWEST = REGISTRY.latest("audit_event_batch").version


def batch(n: int = 3) -> dict[str, Any]:
    events = list(FleetSimulator(1, seed=1).events(n))
    return {"sandbox_id": events[0]["sandbox_id"], "collector": "t", "sent_at": 1, "events": events}


def future_schema() -> dict[str, Any]:
    """A version after the newest of the event batch: the event gains a field with a
    default, and a new category symbol."""
    raw = copy.deepcopy(REGISTRY.latest("audit_event_batch").raw)
    event = raw["fields"][3]["type"]["items"]
    event["fields"].append({"name": "region", "type": "string", "default": "unknown"})
    category = next(f for f in event["fields"] if f["name"] == "category")["type"]
    category["symbols"].append("kernel")
    category["default"] = "process"
    return raw


def test_single_object_encoding_has_magic_and_fingerprint() -> None:
    codec = AvroCodec(REGISTRY)
    data = codec.encode("audit_event_batch", batch())
    version = REGISTRY.latest("audit_event_batch")
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == version.fingerprint
    assert codec.decode(data).writer is version


def test_fingerprint_is_crc64_avro_of_canonical_form() -> None:
    # Avro's test vectors: CRC-64-AVRO of the canonical form '"int"' is
    # 8247732601305521295 (0x7275d51a3f395c8f); single-object encoding writes it
    # little-endian.
    int_schema: Any = "int"
    assert make_version("int", 1, int_schema).fingerprint == struct.pack("<Q", 0x7275D51A3F395C8F)


def test_roundtrip_keeps_every_field() -> None:
    codec = AvroCodec(REGISTRY)
    original = batch(50)
    decoded = codec.decode(codec.encode("audit_event_batch", original)).record
    assert decoded == original


def test_a_newer_reader_reads_older_data_with_defaults() -> None:
    old_codec = AvroCodec(REGISTRY)
    original = batch()
    data = old_codec.encode("audit_event_batch", original)
    future = make_version("audit_event_batch", NEWEST + 1, future_schema())
    new_codec = AvroCodec(REGISTRY.with_version(future))

    decoded = new_codec.decode(data)

    assert decoded.writer.version == NEWEST
    assert decoded.writer.fingerprint == data[2:10]
    assert all(e["region"] == "unknown" for e in decoded.record["events"])
    stripped = [{k: v for k, v in e.items() if k != "region"} for e in decoded.record["events"]]
    assert stripped == original["events"]


def test_newer_data_carries_its_own_fingerprint() -> None:
    v2 = make_version("audit_event_batch", NEWEST + 1, future_schema())
    codec = AvroCodec(REGISTRY.with_version(v2))
    record = batch()
    for event in record["events"]:
        event["region"] = "eu-west"
    data = codec.encode("audit_event_batch", record)
    assert data[2:10] == v2.fingerprint != REGISTRY.latest("audit_event_batch").fingerprint
    assert codec.decode(data).record["events"][0]["region"] == "eu-west"
    with pytest.raises(DecodeError) as info:  # today's reader does not know the future
        AvroCodec(REGISTRY).decode(data)
    assert info.value.reason == "unknown_schema"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not_avro"),
        (b'{"json": true}', "not_avro"),
        (b"\xc3\x01" + b"\x00" * 8 + b"\x02", "unknown_schema"),
    ],
)
def test_undecodable_messages_name_their_reason(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        AvroCodec(REGISTRY).decode(data)
    assert info.value.reason == reason


def test_truncated_and_padded_bodies_are_corrupt() -> None:
    codec = AvroCodec(REGISTRY)
    data = codec.encode("audit_event_batch", batch())
    dead_letter = codec.encode(
        "dead_letter",
        {
            "reason": "r",
            "detail": "",
            "source_topic": "t",
            "source_partition": 0,
            "source_offset": 1,
            "original": b"x",
            "key": None,
            "failed_at": 0,
            "event_id": None,
        },
    )
    tails = (b"\x00", b"\x00\x00", b"\x01\x02\x03", b"\xff" * 40)
    for bad in (data[:-5], *(data + tail for tail in tails), dead_letter + b"\x00"):
        with pytest.raises(DecodeError) as info:
            codec.decode(bad)
        assert info.value.reason == "corrupt_body"


def test_a_value_the_schema_cannot_hold_is_a_value_error_naming_it() -> None:
    codec = AvroCodec(REGISTRY)
    record = batch(1)
    for change, words in (({"category": "kernel"}, "'kernel'"), ({"seq": "x"}, "events.0.seq")):
        record["events"] = [{**record["events"][0], **change}]
        with pytest.raises(ValueError, match=words):
            codec.encode("audit_event_batch", record)


def test_a_v1_collectors_batch_reads_as_v2_and_its_chain_still_verifies() -> None:
    """Collectors are upgraded after workers: a batch written with schema v1 (no parent
    fields) is read with the parent empty, and the hashes its collector sealed still
    link (an event without a parent has version 1's canonical bytes)."""
    from pipeline.chain.hashing import GENESIS, ChainHead, link
    from pipeline.schema.codec import SINGLE_OBJECT_MAGIC

    v1 = next(v for v in REGISTRY.versions() if v.name == "audit_event_batch" and v.version == 1)
    assert v1 is not REGISTRY.latest("audit_event_batch")
    record = batch(20)
    for event in record["events"]:
        for key in ("parent_process", "parent_cmdline"):
            event["actor"].pop(key, None)
    ChainHead().seal_many(record["events"])
    data = SINGLE_OBJECT_MAGIC + v1.fingerprint + v1.fast.binary_encode(record)

    decoded = AvroCodec(REGISTRY).decode(data)

    assert decoded.writer is v1
    events = decoded.record["events"]
    assert {(e["actor"]["parent_process"], e["actor"]["parent_cmdline"]) for e in events} == {
        ("", "")
    }
    prev = GENESIS
    for event in events:
        assert event["prev_hash"] == prev
        assert link(prev, event) == event["hash"]
        prev = event["hash"]
