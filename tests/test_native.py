"""The C speedups (pipeline/_native.c) give exactly what the pure-Python code gives.

Set AUDITPIPE_REQUIRE_NATIVE=1 (CI does) to fail rather than skip where the extension
was not built.
"""

from __future__ import annotations

import contextlib
import copy
import os
import random
from typing import Any

import pytest

from pipeline import native
from pipeline.chain import hashing as chain
from pipeline.chain.hashing import GENESIS, ChainHead
from pipeline.schema.registry import SchemaRegistry
from pipeline.sim.simulate import FleetSimulator

if not native.available():
    if os.environ.get("AUDITPIPE_REQUIRE_NATIVE") == "1":
        raise RuntimeError(
            "AUDITPIPE_REQUIRE_NATIVE=1 but pipeline._native is not built (see setup.py)"
        )
    pytest.skip("the C speedups are not built here", allow_module_level=True)

assert native.speedups is not None
C = native.speedups
BATCH = SchemaRegistry.load().latest("audit_event_batch")


def simulated(n: int, seed: int = 7) -> list[dict[str, Any]]:
    return [dict(e) for e in FleetSimulator(20, seed=seed).events(n)]


def odd_events() -> list[dict[str, Any]]:
    """Edge cases the simulator does not make: non-ASCII, extreme integers, nulls, order."""
    base = simulated(1)[0]
    cases: list[dict[str, Any]] = []
    for change in (
        {"object": "/tmp/ünïcödé/😀", "action": "wrïte"},
        {"ts": 0, "bytes": 0},
        {"ts": -1, "bytes": -(2**63)},
        {"ts": 2**63 - 1, "bytes": 2**63 - 1},
        {"bytes": None, "attributes": {}},
        {
            "attributes": {
                "b": "2",
                "a": "1",
                "é": "x",
                "Z": "",
                "ab": "😀",
                "\uffff": "y",
                "😀": "z",
                "a\x00": "nul",
            }
        },
        {
            "actor": {
                "user": "",
                "uid": None,
                "pid": None,
                "ppid": None,
                "process": "",
                "cmdline": "",
            }
        },
        {
            "actor": {
                "user": "root",
                "uid": 0,
                "pid": 2**31,
                "ppid": -5,
                "process": "sh",
                "cmdline": "sh -c 'echo \"x\"'",
            }
        },
        {
            "actor": {
                "user": "ci",
                "uid": 1000,
                "pid": 7,
                "ppid": 6,
                "process": "sh",
                "cmdline": "sh -c id",
                "parent_process": "/usr/lib/jvm/bin/jävä",
                "parent_cmdline": "java -jar 😀.jar",
            }
        },
        {"actor": dict(base["actor"], parent_process="", parent_cmdline="x")},
        {"actor": dict(base["actor"], parent_process="p", parent_cmdline="")},
        {"actor": {k: v for k, v in base["actor"].items() if not k.startswith("parent_")}},
        {"prev_hash": bytes(range(32)), "hash": bytes(32)},
        {"category": "data_transfer", "level": "critical", "outcome": "denied"},
        {"event_id": "", "tenant": "t" * 5000},
    ):
        event = copy.deepcopy(base)
        event.update(change)
        cases.append(event)
    return cases


def cavro_body(events: list[dict[str, Any]]) -> bytes:
    record = {
        "sandbox_id": "sb-1",
        "collector": "test/1",
        "sent_at": 1_700_000_000_000,
        "events": events,
    }
    body: bytes = BATCH.fast.binary_encode(record)
    return body


def test_the_encoder_is_for_the_current_event_batch_schema() -> None:
    # A new event-batch schema version needs the C encoder updated, then this constant.
    assert BATCH.fingerprint == native.EVENT_BATCH_FINGERPRINT
    assert BATCH.encode_body is not BATCH.fast.binary_encode


@pytest.mark.parametrize("events", [simulated(3000), odd_events(), []], ids=["sim", "odd", "empty"])
def test_batch_bytes_equal_cavros(events: list[dict[str, Any]]) -> None:
    got = C.encode_event_batch("sb-1", "test/1", 1_700_000_000_000, events)
    assert got == cavro_body(events)
    assert (
        BATCH.fast.binary_decode(got)["events"]
        == BATCH.fast.binary_decode(cavro_body(events))["events"]
    )


def test_missing_fields_with_defaults_take_them() -> None:
    event = simulated(1)[0]
    for key in ("level", "outcome", "object", "bytes", "attributes", "prev_hash", "hash"):
        del event[key]
    del event["actor"]["cmdline"]
    assert C.encode_event_batch("sb-1", "test/1", 1, [event]) == BATCH.fast.binary_encode(
        {"sandbox_id": "sb-1", "collector": "test/1", "sent_at": 1, "events": [event]}
    )


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"seq": "7"}, r"events\.0\.seq: expected an integer"),
        ({"ts": 2**64}, r"events\.0\.ts: .* does not fit"),
        ({"category": "kernel"}, r"events\.0\.category: no enum symbol 'kernel'"),
        ({"tenant": None}, r"events\.0\.tenant: expected a string"),
        ({"attributes": {"k": 1}}, r"attributes \(a value\): expected a string"),
        ({"attributes": ["k"]}, r"attributes: expected a dict"),
        ({"hash": b"short"}, r"events\.0\.hash: expected 32 bytes"),
        ({"actor": "root"}, r"actor: expected a dict"),
        ({"object": "\ud800"}, r"events\.0\.object: .* is not valid Unicode"),
    ],
)
def test_a_value_the_schema_cannot_hold_is_an_error_naming_it(
    change: dict[str, Any], words: str
) -> None:
    event = {**simulated(1)[0], **change}
    with pytest.raises((ValueError, TypeError), match=words):
        C.encode_event_batch("sb-1", "test/1", 1, [event])


def test_a_missing_field_without_default_is_an_error() -> None:
    event = simulated(1)[0]
    del event["tenant"]
    with pytest.raises(ValueError, match=r"events\.0\.tenant: missing"):
        C.encode_event_batch("sb-1", "test/1", 1, [event])


@pytest.mark.parametrize("events", [simulated(2000), odd_events()], ids=["sim", "odd"])
def test_canonical_bytes_and_links_equal_the_python_reference(
    events: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    native_links = [chain.link(GENESIS, e) for e in events]
    monkeypatch.setattr(chain, "speedups", None)
    for event, native_link in zip(events, native_links, strict=True):
        assert C.canonical(event) == chain.canonical(event)
        assert native_link == chain.link(GENESIS, event)


def test_seal_equals_sealing_one_event_at_a_time_in_python(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events = simulated(2000) + odd_events()
    reference = copy.deepcopy(events)
    head = ChainHead(41, bytes(range(32)))
    head.seal_many(events)
    monkeypatch.setattr(chain, "speedups", None)
    python_head = ChainHead(41, bytes(range(32)))
    for event in reference:
        python_head.seal(event)
    assert events == reference
    assert (head.seq, head.hash) == (python_head.seq, python_head.hash)


def test_a_seal_that_fails_changes_nothing() -> None:
    events = simulated(5)
    del events[3]["actor"]
    before = copy.deepcopy(events)
    head = ChainHead()
    with pytest.raises(KeyError, match="actor"):
        head.seal_many(events)
    assert events == before
    assert (head.seq, head.hash) == (0, GENESIS)


def test_random_wrong_types_raise_and_never_crash() -> None:
    rng = random.Random(3)
    junk: list[Any] = [None, 1, -1, 2**70, "x", b"x", 1.5, [], {}, {"a": 1}, object(), True]
    base = simulated(1)[0]
    for _ in range(3000):
        event = copy.deepcopy(base)
        target = event["actor"] if rng.random() < 0.3 else event
        target[rng.choice(sorted(target))] = rng.choice(junk)
        with contextlib.suppress(ValueError, TypeError):
            C.encode_event_batch("sb", "c", 1, [event])
        with contextlib.suppress(ValueError, TypeError, KeyError):
            C.seal_encode(event, 0, GENESIS)
        for call in (C.canonical, C.encode_event):
            with contextlib.suppress(ValueError, TypeError, KeyError, UnicodeEncodeError):
                call(event)
        with contextlib.suppress(ValueError, TypeError, KeyError, UnicodeEncodeError):
            C.seal([event], 0, GENESIS)


def test_AUDITPIPE_NATIVE_0_turns_the_speedups_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDITPIPE_NATIVE", "0")
    assert native._load() is None
    monkeypatch.setenv("AUDITPIPE_NATIVE", "1")
    assert native._load() is C


def cavro_decode(body: bytes) -> Any:
    return BATCH.fast.binary_decode(body)


@pytest.mark.parametrize("events", [simulated(3000), odd_events(), []], ids=["sim", "odd", "empty"])
def test_decoded_batches_equal_cavros(events: list[dict[str, Any]]) -> None:
    body = cavro_body(events)
    assert C.decode_event_batch(body) == cavro_decode(body)
    assert C.decode_event_batch(memoryview(b"xx" + body)[2:]) == cavro_decode(body)


def test_blocks_with_negative_counts_and_several_blocks_are_read() -> None:
    from pipeline.schema.batch import avro_long, avro_string

    events = odd_events()[:4]
    encoded = [C.encode_event(e) for e in events]
    head = avro_string("sb-1") + avro_string("test/1") + avro_long(1_700_000_000_000)
    first, second = b"".join(encoded[:2]), b"".join(encoded[2:])
    # two blocks: the first with a negative count and its byte size
    body = head + avro_long(-2) + avro_long(len(first)) + first + avro_long(2) + second
    body += avro_long(0)
    assert C.decode_event_batch(body)["events"] == cavro_decode(cavro_body(events))["events"]


def test_every_truncation_of_a_body_is_a_value_error() -> None:
    body = cavro_body(odd_events())
    for cut in range(len(body)):
        with pytest.raises(ValueError):
            C.decode_event_batch(body[:cut])
    with pytest.raises(ValueError, match="bytes after the record"):
        C.decode_event_batch(body + b"\x00")


def test_corrupt_bytes_never_crash_and_valid_reads_agree_with_cavro() -> None:
    rng = random.Random(5)
    body = bytearray(cavro_body(simulated(20)))
    for _ in range(20_000):
        corrupt = bytearray(body)
        for _ in range(rng.randint(1, 4)):
            corrupt[rng.randrange(len(corrupt))] = rng.randrange(256)
        try:
            got = C.decode_event_batch(bytes(corrupt))
        except ValueError:
            continue
        assert got == cavro_decode(bytes(corrupt))
    for size in range(0, 200):
        with contextlib.suppress(ValueError):
            C.decode_event_batch(rng.randbytes(size))


def test_a_huge_count_in_few_bytes_is_refused_at_once() -> None:
    from pipeline.schema.batch import avro_long, avro_string

    body = avro_string("sb") + avro_string("c") + avro_long(1) + avro_long(2**40)
    with pytest.raises(ValueError, match="block count beyond the data"):
        C.decode_event_batch(body)
