"""The collector's pump gives each event the position to resume from: with auditd's
interleaved events held, never past the first line of the oldest one still held, so a
crash re-reads it instead of losing it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from pipeline.collect.sources.auditd import AuditdParser
from pipeline.collect.sources.follow import IDLE, Line
from pipeline.commands.collect import CollectReport, _Pump


class Recorder:
    """The collector's side the pump uses: emitted events and advanced positions."""

    def __init__(self) -> None:
        self.sources: dict[str, Any] = {}
        self.emitted: list[tuple[str, Any]] = []
        self.advanced: list[Any] = []

    async def emit(self, event: dict[str, Any], *, source: str | None, position: Any) -> None:
        self.emitted.append((event["object"], position))

    def advance(self, key: str, position: Any) -> None:
        self.advanced.append(position)


def pump(collector: Recorder) -> _Pump:
    parser = AuditdParser(tenant="t", sandbox_id="s")
    return _Pump(parser, collector, "k", CollectReport(), lambda _: None)  # type: ignore[arg-type]


def record(kind: str, serial: int, body: str) -> bytes:
    return f"type={kind} msg=audit(1795860000.{serial:03d}:{serial}): {body}".encode()


async def lines(data: list[bytes]) -> AsyncIterator[Line]:
    for number, text in enumerate(data, 1):
        yield Line(text, number, "audit.log", {"line": number})


def test_the_resume_point_stays_at_the_oldest_held_event() -> None:
    data = [
        record("SYSCALL", 60, 'arch=c000003e syscall=87 success=yes exit=0 pid=1 comm="rm"'),
        record("SYSCALL", 61, 'arch=c000003e syscall=87 success=yes exit=0 pid=2 comm="rm"'),
        record("PATH", 61, 'item=0 name="/b" nametype=DELETE'),
        record("EOE", 61, ""),  # 61 is out; 60, begun on line 1, is still held
        record("PATH", 60, 'item=0 name="/a" nametype=DELETE'),
        record("EOE", 60, ""),  # now nothing is held
    ]
    collector = Recorder()
    collector.sources["k"] = {"line": 0}  # where an earlier run stopped
    asyncio.run(pump(collector).run(lines(data)))
    # 61 is sent with the position before line 1: a crash after it re-reads 60 whole.
    assert collector.emitted == [("/b", {"line": 0}), ("/a", {"line": 6})]
    assert {"line": 4} not in collector.advanced  # never past a held event's first line


def test_a_quiet_input_completes_an_event_without_eoe() -> None:
    """Old kernels write no EOE: on a quiet followed file the held event goes out then,
    with the position after the last line, not after eight newer events."""

    async def quiet(data: list[bytes]) -> AsyncIterator[Line]:
        async for line in lines(data):
            yield line
        yield IDLE
        await asyncio.sleep(3600)  # still following: nothing more comes

    collector = Recorder()
    rm = record("SYSCALL", 90, 'arch=c000003e syscall=87 success=yes exit=0 pid=1 comm="rm"')
    path = record("PATH", 90, 'item=0 name="/etc/audit/audit.rules" nametype=DELETE')

    async def run() -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(pump(collector).run(quiet([rm, path])), 1)

    asyncio.run(run())
    assert collector.emitted == [("/etc/audit/audit.rules", {"line": 2})]
