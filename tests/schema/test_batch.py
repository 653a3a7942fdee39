"""Event-batch messages joined from events encoded one at a time (pipeline/schema/batch.py)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pipeline.chain import hashing as chain
from pipeline.chain.hashing import ChainHead
from pipeline.schema import batch
from pipeline.schema.batch import EventBatchEncoder
from pipeline.schema.codec import AvroCodec
from pipeline.schema.registry import SchemaRegistry
from pipeline.sim.simulate import FleetSimulator

CODEC = AvroCodec(SchemaRegistry.load())


def events(n: int) -> list[dict[str, Any]]:
    found = list(FleetSimulator(1, seed=2).events(n))
    ChainHead().seal_many(found)
    return found


@pytest.fixture(params=["default", "pure-python"])
def encoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> EventBatchEncoder:
    if request.param == "pure-python":
        monkeypatch.setattr(batch, "speedups", None)
        monkeypatch.setattr(chain, "speedups", None)
    return EventBatchEncoder(CODEC, collector="test/1")


def test_a_message_is_the_avro_encoding_of_the_whole_batch(encoder: EventBatchEncoder) -> None:
    for found in (events(300), []):
        joined = encoder.message("sb", [encoder.encode(e) for e in found], sent_at=1234)
        record = {"sandbox_id": "sb", "collector": "test/1", "sent_at": 1234, "events": found}
        assert joined == CODEC.encode("audit_event_batch", record)
        assert CODEC.decode(joined).record["events"] == found


def test_oversized_batches_are_split_in_order_and_lose_nothing(
    encoder: EventBatchEncoder,
) -> None:
    found = events(1000)
    encoded = [encoder.encode(e) for e in found]
    [(whole, count)] = encoder.messages("sb", encoded, max_bytes=10_000_000, sent_at=1)
    assert count == 1000
    limit = len(whole) // 5

    parts = encoder.messages("sb", encoded, max_bytes=limit, sent_at=1)

    assert 5 < len(parts) < 8  # filled up to the limit, not halved
    assert all(len(message) <= limit for message, _ in parts)
    decoded = [e for message, _ in parts for e in CODEC.decode(message).record["events"]]
    assert decoded == found
    assert [n for _, n in parts] == [len(CODEC.decode(m).record["events"]) for m, _ in parts]


def test_an_event_over_the_limit_goes_alone(encoder: EventBatchEncoder) -> None:
    found = events(3)
    found[1]["attributes"] = {"big": "x" * 5000}
    encoded = [encoder.encode(e) for e in found]
    parts = encoder.messages("sb", encoded, max_bytes=2000, sent_at=1)
    assert [n for _, n in parts] == [1, 1, 1]
    assert len(parts[1][0]) > 5000


def test_seal_encoded_leaves_a_refused_event_and_the_head_unchanged(
    encoder: EventBatchEncoder,
) -> None:
    event = events(1)[0]
    event["category"] = "kernel"
    before = copy.deepcopy(event)
    head = ChainHead(7, bytes(range(32)))
    with pytest.raises(ValueError, match="kernel"):
        head.seal_encoded(event, encoder.encode)
    assert event == before
    assert (head.seq, head.hash) == (7, bytes(range(32)))


def test_seal_encoded_seals_then_encodes(encoder: EventBatchEncoder) -> None:
    sealed = events(1)[0]
    reference = copy.deepcopy(sealed)
    head, python_head = ChainHead(7, bytes(32)), ChainHead(7, bytes(32))
    encoded = head.seal_encoded(sealed, encoder.encode)
    python_head.seal(reference)
    assert sealed == reference
    assert (head.seq, head.hash) == (8, reference["hash"])
    assert encoder.message("sb", [encoded], sent_at=0) == encoder.message(
        "sb", [encoder.encode(reference)], sent_at=0
    )
