"""``auditpipe collect``: read a source, map its lines to events, hand them to a Collector.

Sources: ``jsonl:PATH``, ``auditd:PATH``, ``falco:PATH`` (files, followed with
``--follow``), and ``stdin`` / ``stdin:auditd`` / ``stdin:falco``. A file source resumes
after a restart from the position of the collector's last commit, so every line is
published exactly once; stdin cannot be re-read and has no position.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pipeline.collect.collector import Collector
from pipeline.collect.sources import ParseError
from pipeline.collect.sources.auditd import AuditdParser
from pipeline.collect.sources.falco import FalcoParser
from pipeline.collect.sources.follow import IDLE, FileFollower, Line
from pipeline.collect.sources.jsonl import JsonLinesParser
from pipeline.commands.base import EXIT_OK, EXIT_PARTIAL, EXIT_UNAVAILABLE, EXIT_USAGE
from pipeline.config import Settings
from pipeline.schema.event import Event

FORMATS = ("jsonl", "auditd", "falco")
PROGRESS_EVERY_S = 10.0


class Parser(Protocol):
    @property
    def held_since(self) -> int | None:
        """The feed call (from 1) whose line began the oldest event the parser still
        holds (its resume point), None when it holds none."""

    def feed(self, line: bytes) -> list[Event]: ...
    def finish(self) -> list[Event]: ...


@dataclass(frozen=True)
class SourceSpec:
    format: str
    path: Path | None
    """None for stdin."""

    @classmethod
    def parse(cls, text: str) -> SourceSpec:
        kind, _, rest = text.partition(":")
        if kind == "stdin":
            fmt = rest or "jsonl"
            if fmt not in FORMATS:
                raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
            return cls(fmt, None)
        if kind not in FORMATS or not rest:
            raise ValueError(
                f"--source takes FORMAT:PATH or stdin[:FORMAT] "
                f"(FORMAT: {', '.join(FORMATS)}), got {text!r}"
            )
        return cls(kind, Path(rest))

    @property
    def key(self) -> str:
        return f"{self.format}:{self.path.resolve() if self.path else '-'}"


@dataclass
class CollectReport:
    lines: int = 0
    bad_lines: int = 0
    events: int = 0
    undelivered_groups: int = 0
    """Groups of events still in the spool at exit (Kafka did not take them in time)."""


def make_parser(spec: SourceSpec, settings: Settings) -> Parser:
    tenant = settings.collect.tenant
    sandbox = settings.collect.sandbox_id or socket.gethostname()
    if spec.format == "auditd":
        return AuditdParser(tenant=tenant, sandbox_id=sandbox)
    if spec.format == "falco":
        return FalcoParser(tenant=tenant, sandbox_id=settings.collect.sandbox_id)
    return JsonLinesParser(
        tenant=tenant, sandbox_id=sandbox, trust_identity=settings.collect.trust_source_identity
    )


async def run_collect(
    settings: Settings,
    spec: SourceSpec,
    *,
    follow: bool,
    name: str,
    on_error: Callable[[str], None],
) -> CollectReport:
    spool_dir = settings.collect.spool_dir or settings.home.resolve() / "spool" / name
    min_level = settings.collect.min_levels.get(settings.collect.environment)
    report = CollectReport()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with Collector(
        settings, spool_dir=spool_dir, client_id=f"collect-{name}", min_level=min_level
    ) as collector:
        parser = make_parser(spec, settings)
        lines = _lines(spec, collector.sources.get(spec.key), follow)
        key = spec.key if spec.path is not None else None
        pump = _Pump(parser, collector, key, report, on_error)
        reader = asyncio.create_task(pump.run(lines))
        progress = asyncio.create_task(_progress(collector, report))
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({reader, stopped}, return_when=asyncio.FIRST_COMPLETED)
        for task in (reader, stopped, progress):
            task.cancel()
        await asyncio.gather(reader, stopped, progress, return_exceptions=True)
        if reader.done() and not reader.cancelled() and reader.exception():
            raise reader.exception()  # type: ignore[misc]
    report.undelivered_groups = collector.undelivered_groups
    _log(collector, report)
    return report


async def _lines(
    spec: SourceSpec, position: dict[str, Any] | None, follow: bool
) -> AsyncIterator[Line]:
    if spec.path is not None:
        async for line in FileFollower(spec.path, follow=follow, position=position).lines():
            yield line
        return
    reader = asyncio.StreamReader(limit=16 * 1024 * 1024)
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    number = 0
    while raw := await reader.readline():
        number += 1
        yield Line(raw.rstrip(b"\n"), number, "-", {})


class _Pump:
    """Each event goes to the collector with the position to resume from once it is
    committed.

    A parser may hold the lines of unfinished events (auditd, whose records of one event
    may be interleaved with another's); then the resume position stays at the start of
    the oldest held event's first line, so a crash re-reads its lines instead of losing
    them (``starts`` keeps where each line since then began). When the followed file has
    been quiet for a while (``IDLE``), the held events are complete: an event of an old
    kernel without EOE does not wait for newer ones to be sent.
    """

    def __init__(
        self,
        parser: Parser,
        collector: Collector,
        key: str | None,
        report: CollectReport,
        on_error: Callable[[str], None],
    ) -> None:
        self.parser, self.collector, self.key = parser, collector, key
        self.report, self.on_error = report, on_error
        self.before: Any = collector.sources.get(key) if key else None
        """The position after the last line read."""
        self.starts: deque[tuple[int, Any]] = deque()
        self.fed = 0
        self.last: Any = None

    async def run(self, lines: AsyncIterator[Line]) -> None:
        """Feed the lines to the parser and its events to the collector."""
        async for line in lines:
            if line is IDLE:
                await self.idle()
            else:
                await self.line(line)
        await self.idle()  # the end of the input: what is still held is complete

    async def line(self, line: Line) -> None:
        self.report.lines += 1
        self.fed += 1
        self.starts.append((self.fed, self.before))
        try:
            events = self.parser.feed(line.data)
        except ParseError as exc:
            self.report.bad_lines += 1
            self.on_error(f"{line.file}:{line.number}: {exc}")
            events = []
        self.before = line.after
        await self._send(events)

    async def idle(self) -> None:
        if self.parser.held_since is None:
            return
        try:
            events = self.parser.finish()
        except ParseError as exc:
            self.report.bad_lines += 1
            self.on_error(f"an event held at the end of the input: {exc}")
            events = []
        await self._send(events)

    async def _send(self, events: list[Event]) -> None:
        held = self.parser.held_since
        starts = self.starts
        while starts and (held is None or starts[0][0] < held):
            starts.popleft()
        position = self.before if held is None else starts[0][1]
        if position is self.last and not events:
            return  # still inside the same held event: the resume point stays
        self.last = position
        for event in events:
            await self.collector.emit(event, source=self.key, position=position)
            self.report.events += 1
        if self.key and not events:
            self.collector.advance(self.key, position)


async def _progress(collector: Collector, report: CollectReport) -> None:
    while True:
        await asyncio.sleep(PROGRESS_EVERY_S)
        _log(collector, report)


def _log(collector: Collector, report: CollectReport) -> None:
    stats = collector.stats.as_dict()
    print(
        f"{time.strftime('%H:%M:%S')} lines {report.lines}, bad {report.bad_lines}, "
        f"events {report.events}; collector {stats}; spool "
        f"{collector.spool.bytes_on_disk / 1e6:.1f} MB",
        file=sys.stderr,
        flush=True,
    )


def main_collect(settings: Settings, source: str, *, follow: bool, name: str | None) -> int:
    spec = SourceSpec.parse(source)
    shown = 0

    def report_error(message: str) -> None:
        nonlocal shown
        shown += 1
        if shown <= 100:
            print(message, file=sys.stderr)

    collector_name = name or (spec.path.name if spec.path else "stdin")
    with contextlib.suppress(KeyboardInterrupt):
        result = asyncio.run(
            run_collect(settings, spec, follow=follow, name=collector_name, on_error=report_error)
        )
        print(
            f"collected {result.events} events from {result.lines} lines; "
            f"{result.bad_lines} bad lines"
        )
        if result.undelivered_groups:
            print(
                f"auditpipe: Kafka at {settings.kafka.bootstrap} did not take "
                f"{result.undelivered_groups} groups of events before exit: they stay "
                f"spooled and are delivered at the next start",
                file=sys.stderr,
            )
            return EXIT_UNAVAILABLE
        return EXIT_PARTIAL if result.bad_lines else EXIT_OK
    return 130


def add_parser(sub: Any) -> None:
    collect = sub.add_parser(
        "collect",
        help="collect from a log source: chain, spool and deliver its events to Kafka",
        description="Read jsonl:PATH, auditd:PATH, falco:PATH or stdin[:FORMAT]; with "
        "--follow keep reading as the file grows (rotation and truncation handled). A "
        "restart resumes where the last commit left off: every line is published once.",
    )
    collect.add_argument(
        "--source", required=True, help="jsonl:PATH, auditd:PATH, falco:PATH, stdin[:FORMAT]"
    )
    collect.add_argument("--follow", action="store_true", help="keep reading as the file grows")
    collect.add_argument("--name", help="collector name: its spool folder (default: file name)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        return main_collect(settings, args.source, follow=args.follow, name=args.name)
    except ValueError as exc:
        print(f"auditpipe: {exc}", file=sys.stderr)
        return EXIT_USAGE
