"""Every input the fuzzer (``tests/fuzz/fuzz_inputs.py``) found that crashed, hung or
was decoded differently, kept as a test."""

from __future__ import annotations

import time

import pytest

from pipeline import native
from pipeline.collect.sources import ParseError
from pipeline.collect.sources.auditd import AuditdParser
from pipeline.schema.event import InvalidEvent, parse_event_line


@pytest.mark.parametrize(
    "line",
    [
        b'{"category": {"category": "l9d24"}, "tenant": "t", "sandbox_id": "sb", "action": "x"}',
        b'{"category": ["file"], "tenant": "t", "sandbox_id": "sb", "action": "x"}',
        b'{"category": "file", "level": {}, "tenant": "t", "sandbox_id": "sb", "action": "x"}',
    ],
)
def test_a_json_line_with_an_object_for_a_choice_is_an_invalid_event(line: bytes) -> None:
    """Found by the jsonl target: TypeError (unhashable dict) stopped `publish`."""
    with pytest.raises(InvalidEvent):
        parse_event_line(line, now_ms=1_795_860_000_000)


@pytest.mark.skipif(not native.available(), reason="the C extension is not built")
def test_a_block_whose_size_does_not_match_its_items_is_corrupt() -> None:
    """Found by the decoder target: a negative block count with a size of 0, then an
    event. The C decoder ignored the size and took the event; Avro readers that skip
    blocks by their size (cavro) refused the bytes."""
    assert native.speedups is not None
    body = bytes.fromhex("0000000100") + bytes(22)
    with pytest.raises(ValueError, match="block"):
        native.speedups.decode_event_batch(body)


@pytest.mark.skipif(not native.available(), reason="the C extension is not built")
def test_a_negative_block_count_with_its_size_reads_as_fastavro_reads_it() -> None:
    """Found by the decoder target: valid Avro (a block of -1 items, 20 bytes) that the C
    decoder and fastavro read alike; cavro refused it, so the oracle is fastavro now. (22
    bytes since schema v2: the actor's two parent strings.)"""
    import io

    import fastavro

    from pipeline.schema.registry import SchemaRegistry, without_logical_types

    assert native.speedups is not None
    body = bytes.fromhex("047562026302012c0049000000000000000000000000000000000000000000")
    raw = without_logical_types(SchemaRegistry.load().latest("audit_event_batch").raw)
    schema = fastavro.parse_schema(raw)
    reference = fastavro.schemaless_reader(io.BytesIO(body), schema, schema)
    assert native.speedups.decode_event_batch(body) == reference
    assert reference["events"][0]["ts"] == -37


def test_a_forged_argc_does_not_hold_the_auditd_parser() -> None:
    """Found by the auditd target: argc=4277777772 looped over every index."""
    parser = AuditdParser(tenant="t", sandbox_id="sb")
    lines = [
        b"type=SYSCALL msg=audit(1795860000.123:42): arch=c000003e syscall=59 success=yes "
        b'exit=0 ppid=1 pid=7 uid=0 comm="sh" exe="/bin/sh"',
        b"type=EXECVE msg=audit(1795860000.123:42): argc=4277777772 a0=sh a1=-c",
    ]
    started = time.perf_counter()
    for line in lines:
        parser.feed(line)
    try:
        events = parser.finish()
    except ParseError:
        events = []
    assert time.perf_counter() - started < 1.0
    assert not events or events[0]["actor"]["cmdline"] == "sh -c"


def test_a_falco_alert_whose_output_fields_are_not_an_object_is_a_parse_error() -> None:
    """Found by the falco target (under the sanitizers): AttributeError on a string."""
    from pipeline.collect.sources.falco import FalcoParser

    parser = FalcoParser(tenant="t", sandbox_id="sb")
    for fields in (b'"container.T10"', b"[1, 2]", b"7"):
        line = b'{"rule": "r", "priority": "Notice", "output": "x", "output_fields": ' + fields
        with pytest.raises(ParseError, match="output_fields"):
            parser.feed(line + b"}")
