"""Coverage-guided fuzzing (atheris, libFuzzer) of the code that parses untrusted bytes.

    python -m tests.fuzz.fuzz_inputs TARGET [libFuzzer options, e.g. -max_total_time=60]

TARGET is one of:

* ``decoder``: the C batch decoder (``pipeline/_native.c``), on Avro bodies; it may only
  raise ValueError, and what it accepts fastavro (the reference) reads as the same record;
* ``auditd``, ``falco``: the collector's sources, on log lines; they may only raise
  ParseError, and every event they make is valid and encodes;
* ``jsonl``: the publisher's JSON-lines parser, which may only refuse a line as invalid
  JSON or an invalid event, and whose events encode.

Any other exception, and any memory error when the extension is built with
AddressSanitizer (``make sanitize``), is a finding: libFuzzer stops and writes the input
as ``crash-*``. Seeds are written to ``build/fuzz/<target>/`` first. Each crash found
becomes a case in ``tests/fuzz/test_regressions.py``.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import atheris  # type: ignore[import-not-found]
import fastavro

with atheris.instrument_imports(include=["pipeline"]):
    from pipeline import native
    from pipeline.collect.sources import ParseError
    from pipeline.collect.sources.auditd import AuditdParser
    from pipeline.collect.sources.falco import FalcoParser
    from pipeline.schema.event import InvalidEvent, parse_event_line
    from pipeline.schema.registry import SchemaRegistry, without_logical_types
    from pipeline.sim.simulate import FleetSimulator

BATCH = SchemaRegistry.load().latest("audit_event_batch")
REFERENCE = fastavro.parse_schema(without_logical_types(BATCH.raw))
"""The batch schema for fastavro, the reference decoder (cavro, the Python path, refuses
some valid encodings, e.g. a negative block count with its size: found by this fuzzer)."""


def _encodes(events: list[Any]) -> None:
    """What a source accepted can be sealed into a chain and encoded (as the collector
    does next): a ValueError here would stop the collector on a line it took."""
    if native.speedups is not None:
        for event in events:
            native.speedups.seal_encode(event, 0, bytes(32))


def decoder(data: bytes) -> None:
    assert native.speedups is not None, "the C extension is not built"
    try:
        record = native.speedups.decode_event_batch(data, 1000)
    except ValueError:
        return
    reader = io.BytesIO(data)  # the reference implementation must read the same record
    reference = fastavro.schemaless_reader(reader, REFERENCE, REFERENCE)
    assert reader.tell() == len(data) and reference == record, "C and fastavro differ"


def auditd(data: bytes) -> None:
    parser = AuditdParser(tenant="t", sandbox_id="sb")
    events = []
    for line in data.split(b"\n"):
        try:
            events += parser.feed(line)
        except ParseError:
            continue
    with contextlib.suppress(ParseError):
        events += parser.finish()
    _encodes(events)


def falco(data: bytes) -> None:
    parser = FalcoParser(tenant="t", sandbox_id="sb")
    for line in data.split(b"\n"):
        try:
            _encodes(parser.feed(line))
        except ParseError:
            continue


def jsonl(data: bytes) -> None:
    for line in data.split(b"\n"):
        try:
            event = parse_event_line(line, now_ms=1_795_860_000_000)
        except (ValueError, InvalidEvent):  # orjson.JSONDecodeError is a ValueError
            continue
        _encodes([event])


TARGETS: dict[str, Callable[[bytes], None]] = {
    "decoder": decoder,
    "auditd": auditd,
    "falco": falco,
    "jsonl": jsonl,
}


def seeds(target: str) -> list[bytes]:
    events = [dict(e) for e in FleetSimulator(3, seed=1).events(4)]
    if target == "decoder":
        body = BATCH.fast.binary_encode(
            {"sandbox_id": "sb", "collector": "c", "sent_at": 1, "events": events}
        )
        return [body, body[: len(body) // 2]]
    if target == "auditd":
        return [
            b"type=SYSCALL msg=audit(1795860000.123:42): arch=c000003e syscall=59 success=yes "
            b'exit=0 a0=55 ppid=1 pid=7 auid=1000 uid=0 comm="sh" exe="/bin/sh"\n'
            b'type=EXECVE msg=audit(1795860000.123:42): argc=2 a0="sh" a1=2D63\n'
            b'type=PATH msg=audit(1795860000.123:42): item=0 name="/bin/sh" nametype=NORMAL\n'
            b"type=EOE msg=audit(1795860000.123:42): \n"
        ]
    if target == "falco":
        return [
            b'{"rule": "Terminal shell in container", "time": "2026-11-29T10:00:00.123456789Z",'
            b' "priority": "Notice", "output": "x", "output_fields": {"proc.cmdline": "sh -i",'
            b' "proc.pid": 7, "user.name": "root", "fd.name": "/etc/shadow",'
            b' "evt.type": "execve", "container.id": "abc"}}'
        ]
    import orjson

    return [orjson.dumps({k: v for k, v in e.items() if not isinstance(v, bytes)}) for e in events]


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: python -m tests.fuzz.fuzz_inputs {{{','.join(TARGETS)}}} [options]")
    target = sys.argv[1]
    folder = Path("build/fuzz") / target
    folder.mkdir(parents=True, exist_ok=True)
    for n, seed in enumerate(seeds(target)):
        (folder / f"seed-{n}").write_bytes(seed)
    atheris.Setup([sys.argv[0], *sys.argv[2:], str(folder)], TARGETS[target])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
