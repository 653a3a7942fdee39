"""A collector's spool: the write-ahead log between emitting events and Kafka.

Every message is written here before it is sent, so what the collector accepted survives
a crash, a restart and a broker outage, and is delivered later in order.

The spool is a folder of segment files ``<first group number>.spool``. A segment holds
framed records (4-byte big-endian length, 4-byte CRC-32 of the payload, payload). Records
come in *groups*, written with one fsync: the messages of one commit, then an END record
carrying the state after them (each sandbox's chain head, each source's position). A
group without its END (a crash in the middle of a write) is discarded on recovery, with
everything after it. ACK records note the highest group number Kafka acknowledged;
segments whose groups are all acknowledged are deleted. ACK records are not fsynced on
their own (the next group's fsync carries them): one lost in a crash only makes the
restarted collector look its groups up in Kafka, which it does for unacknowledged groups
anyway, and sends none of them twice.
"""

from __future__ import annotations

import itertools
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

_FRAME = struct.Struct(">II")
_MESSAGE, _END, _ACK = b"M", b"E", b"A"
SEGMENT_SUFFIX = ".spool"


@dataclass(frozen=True)
class SpooledMessage:
    chain: str
    """The chain the message's events belong to: ``chain_key(tenant, sandbox_id)`` (a
    spool written before keys named the tenant holds the sandbox_id alone). Also the
    message's Kafka key."""
    first_seq: int
    last_seq: int
    events: int
    payload: bytes


@dataclass
class Group:
    number: int
    messages: list[SpooledMessage]
    state: dict[str, Any]


@dataclass
class Recovered:
    """What a spool holds after a restart."""

    unacked: list[Group] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    """The newest committed state: ``heads`` {sandbox: [seq, hash hex]}, ``sources``."""
    next_group: int = 1
    discarded_bytes: int = 0
    """Bytes of a torn group at the end, dropped (its events were never sent)."""


class Spool:
    """Append-only, crash-safe log of committed groups of messages."""

    def __init__(
        self, folder: Path, *, segment_bytes: int = 64 * 1024 * 1024, fsync: bool = True
    ) -> None:
        self.folder = folder
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        # Spooled events are not redacted by the worker yet and may hold what a rule will
        # mask later: only the collector's user may read them (0700 / 0600), whatever the
        # umask, and a folder or segment left readable by an older version is narrowed.
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        for segment in self._segments():
            os.chmod(segment, 0o600)
        self._file: Any = None
        self._segment_first_group = 0
        self.acked = 0
        self.bytes_on_disk = sum(p.stat().st_size for p in self._segments())

    # -- recovery -------------------------------------------------------------------

    def recover(self) -> Recovered:
        """Read every segment; truncate a torn tail; return the unacknowledged groups."""
        result = Recovered()
        groups: list[Group] = []
        for path in self._segments():
            good_end, torn = self._read_segment(path, groups, result)
            if torn:
                result.discarded_bytes += path.stat().st_size - good_end
                with path.open("r+b") as handle:
                    handle.truncate(good_end)
                for later in self._segments():
                    if int(later.stem) > int(path.stem):
                        result.discarded_bytes += later.stat().st_size
                        later.unlink()
                break
        result.unacked = [g for g in groups if g.number > self.acked]
        if groups:
            result.next_group = groups[-1].number + 1
        self.bytes_on_disk = sum(p.stat().st_size for p in self._segments())
        return result

    def _read_segment(self, path: Path, groups: list[Group], result: Recovered) -> tuple[int, bool]:
        data = path.read_bytes()
        pos = good_end = 0
        pending: list[SpooledMessage] = []
        while pos < len(data):
            record = _read_record(data, pos)
            if record is None:
                return good_end, True
            kind, payload, pos = record
            if kind == _MESSAGE:
                pending.append(_decode_message(payload))
            elif kind == _END:
                header = orjson.loads(payload)
                groups.append(Group(header["group"], pending, header["state"]))
                result.state = header["state"]
                pending = []
                good_end = pos
            elif kind == _ACK:
                self.acked = max(self.acked, int(payload))
                good_end = pos if not pending else good_end
        return good_end, bool(pending)

    # -- writing --------------------------------------------------------------------

    def append_group(
        self, number: int, messages: list[SpooledMessage], state: dict[str, Any]
    ) -> None:
        """Write one group durably (one fsync): after this returns it survives a crash."""
        self.write_group(number, messages, state)()

    def write_group(
        self, number: int, messages: list[SpooledMessage], state: dict[str, Any]
    ) -> Callable[[], None]:
        """Write one group; return the call that makes it durable (the fsync), which may
        run in another thread while the caller's event loop goes on."""
        frames = [_frame(_MESSAGE, _encode_message(m)) for m in messages]
        frames.append(_frame(_END, orjson.dumps({"group": number, "state": state})))
        self._write(b"".join(frames), number, sync=False)
        if not self.fsync:
            return _nothing
        # Its own descriptor: the segment may be closed (rolled over) while it syncs.
        descriptor = os.dup(self._file.fileno())

        def make_durable() -> None:
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)

        return make_durable

    def acknowledge(self, number: int) -> None:
        """Kafka acknowledged every group up to ``number``."""
        if number <= self.acked:
            return
        self.acked = number
        self._write(_frame(_ACK, str(number).encode()), None, sync=False)
        self._delete_acked_segments()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _write(self, data: bytes, group: int | None, *, sync: bool = True) -> None:
        if self._file is None or (group is not None and self._file.tell() >= self.segment_bytes):
            self._open_segment(group if group is not None else self.acked + 1)
        self._file.write(data)
        self._file.flush()
        if sync and self.fsync:
            os.fsync(self._file.fileno())
        self.bytes_on_disk += len(data)

    def _open_segment(self, first_group: int) -> None:
        self.close()
        path = self.folder / f"{first_group:012d}{SEGMENT_SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)
        self._file = os.fdopen(fd, "ab")
        self._segment_first_group = first_group

    def _delete_acked_segments(self) -> None:
        segments = self._segments()
        # A segment can go once the next one starts at or below the acknowledged group.
        for current, following in itertools.pairwise(segments):
            if int(following.stem) <= self.acked + 1:
                self.bytes_on_disk -= current.stat().st_size
                current.unlink()

    def _segments(self) -> list[Path]:
        return sorted(self.folder.glob(f"*{SEGMENT_SUFFIX}"), key=lambda p: int(p.stem))

    def read_groups(self, after: int) -> Iterator[Group]:
        """Committed groups numbered above ``after``, from disk, in order."""
        recovered = Recovered()
        groups: list[Group] = []
        saved_acked = self.acked
        for path in self._segments():
            self._read_segment(path, groups, recovered)
        self.acked = saved_acked
        yield from (g for g in groups if g.number > after)


def _nothing() -> None:
    pass


def _frame(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return _FRAME.pack(len(body), zlib.crc32(body)) + body


def _read_record(data: bytes, pos: int) -> tuple[bytes, bytes, int] | None:
    if pos + _FRAME.size > len(data):
        return None
    length, crc = _FRAME.unpack_from(data, pos)
    start, end = pos + _FRAME.size, pos + _FRAME.size + length
    if end > len(data) or length == 0:
        return None
    body = data[start:end]
    if zlib.crc32(body) != crc:
        return None
    return body[:1], body[1:], end


_MESSAGE_HEADER = struct.Struct(">QQI H")


def _encode_message(message: SpooledMessage) -> bytes:
    sandbox = message.chain.encode()
    return (
        _MESSAGE_HEADER.pack(message.first_seq, message.last_seq, message.events, len(sandbox))
        + sandbox
        + message.payload
    )


def _decode_message(data: bytes) -> SpooledMessage:
    first_seq, last_seq, events, name_len = _MESSAGE_HEADER.unpack_from(data)
    start = _MESSAGE_HEADER.size
    sandbox = data[start : start + name_len].decode()
    return SpooledMessage(sandbox, first_seq, last_seq, events, data[start + name_len :])
