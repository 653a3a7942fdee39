"""Reading a log file line by line, optionally following it as it grows.

A position is ``{"inode": ..., "offset": ..., "line": ...}``: where the next unread line
starts. Following handles what log rotation does:

* **rename** (logrotate's default): the file at the path gets a new inode. The old file
  is read to its end first, then the new one from its start. If the collector was down
  during a rotation, the old file is found among the path's siblings by its inode.
* **truncation** (copytruncate): the file shrinks below the position; reading restarts
  at its start.
* **replacement**: the file at the position's inode no longer starts with the bytes it
  started with. A copytruncate that grew back past the position while the collector was
  down keeps the inode and a size beyond the position, so inode and size alone would skip
  the new lines silently; the position therefore holds a fingerprint (SHA-256) of the
  file's first bytes (up to ``HEAD_BYTES``, never past the position), checked on start
  and at every poll. A mismatch restarts the file at its start: lines are never skipped
  (at worst read twice, which the chain's sequence numbers and the worker's dedup show).

A last line without its newline is held back until the newline arrives (or, without
follow, returned at the end of the file).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

READ_BYTES = 1024 * 1024
HEAD_BYTES = 1024
"""How much of a file's start its fingerprint covers."""


@dataclass
class Line:
    data: bytes
    """The line without its newline."""
    number: int
    """1-based line number in its file (for error messages)."""
    file: str
    after: dict[str, Any]
    """The position right after this line: where to resume once it is handled."""


IDLE = Line(b"", 0, "", {})
"""Yielded once when a followed file has had nothing new for ``idle_s``: a parser holding
an unfinished event (auditd) takes it as complete."""


class FileFollower:
    def __init__(
        self,
        path: Path,
        *,
        follow: bool,
        position: dict[str, Any] | None = None,
        poll_s: float = 0.1,
        idle_s: float = 1.0,
    ) -> None:
        self.path = path
        self.follow = follow
        self.position = position
        self.poll_s = poll_s
        self.idle_polls = max(1, round(idle_s / poll_s))
        self.rotations = 0
        self.truncations = 0
        self._head = _Head()

    async def lines(self) -> AsyncIterator[Line]:
        handle, inode, offset, number = await self._open_start()
        pending = b""
        quiet = 0
        try:
            while True:
                data = handle.read(READ_BYTES)
                if data:
                    quiet = 0
                    pending += data
                    *complete, pending = pending.split(b"\n")
                    for raw in complete:
                        offset += len(raw) + 1
                        number += 1
                        yield Line(raw, number, str(self.path), self._pos(inode, offset, number))
                    continue
                if not self.follow:
                    if pending:
                        offset += len(pending)
                        number += 1
                        yield Line(
                            pending, number, str(self.path), self._pos(inode, offset, number)
                        )
                    return
                changed = self._changed(inode, offset + len(pending))
                if changed == "rotated" and (rest := handle.read()):
                    pending += rest  # written to the old file after the rename
                    *complete, pending = pending.split(b"\n")
                    for raw in complete:
                        offset += len(raw) + 1
                        number += 1
                        yield Line(raw, number, str(self.path), self._pos(inode, offset, number))
                if changed == "rotated":
                    if pending:  # the old file's last line, never to be completed
                        offset += len(pending)
                        number += 1
                        yield Line(
                            pending, number, str(self.path), self._pos(inode, offset, number)
                        )
                    handle.close()
                    handle, inode, offset, number = self._open(0)
                    pending = b""
                    self.rotations += 1
                elif changed == "truncated":
                    handle.seek(0)
                    offset, number, pending = 0, 0, b""
                    self._head = _Head(handle)
                    self.truncations += 1
                else:
                    quiet += 1
                    if quiet == self.idle_polls:
                        yield IDLE
                    await asyncio.sleep(self.poll_s)
        finally:
            handle.close()

    async def _open_start(self) -> tuple[BinaryIO, int, int, int]:
        while not self.path.exists():
            if not self.follow:
                raise FileNotFoundError(self.path)
            await asyncio.sleep(self.poll_s)
        position = self.position
        if not position:
            return self._open(0)
        inode, offset = int(position["inode"]), int(position["offset"])
        number = int(position.get("line", 0))
        current = os.stat(self.path)
        if current.st_ino == inode:
            # Truncated while we were away, or replaced: from the start (see _open).
            return self._open(offset, number, position)
        old = self._find_rotated(inode)
        if old is not None and old.stat().st_size > offset:
            handle = old.open("rb")
            if _same_head(handle, position):
                # Rotated while we were away: finish the old file first.
                self.rotations += 1
                handle.seek(offset)
                self._head = _Head(handle, min(offset, HEAD_BYTES))
                return handle, inode, offset, number
            handle.close()  # the inode was reused by another file
        return self._open(0)

    def _open(
        self, offset: int, number: int = 0, position: dict[str, Any] | None = None
    ) -> tuple[BinaryIO, int, int, int]:
        handle = self.path.open("rb")
        inode = os.fstat(handle.fileno()).st_ino
        size = os.fstat(handle.fileno()).st_size
        if offset > size or (position is not None and not _same_head(handle, position)):
            if offset:
                self.truncations += 1  # truncated, or replaced and grown back past it
            offset, number = 0, 0
        handle.seek(offset)
        self._head = _Head(handle, min(offset, HEAD_BYTES))
        return handle, inode, offset, number

    def _changed(self, inode: int, offset: int) -> str | None:
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            return None  # renamed, the new file not there yet: keep the old one open
        if current.st_ino != inode:
            return "rotated"
        if current.st_size < offset:
            return "truncated"
        if self._head.changed():
            return "truncated"  # truncated and grown back past us between two polls
        return None

    def _find_rotated(self, inode: int) -> Path | None:
        for sibling in self.path.parent.glob(self.path.name + "*"):
            try:
                if sibling.stat().st_ino == inode:
                    return sibling
            except FileNotFoundError:
                continue
        return None

    def _pos(self, inode: int, offset: int, number: int) -> dict[str, Any]:
        head = self._head
        if head.length < HEAD_BYTES and offset > head.length and head.handle is not None:
            head.take(min(offset, HEAD_BYTES))
        return {
            "inode": inode,
            "offset": offset,
            "line": number,
            "head": head.digest,
            "head_len": head.length,
        }


class _Head:
    """The fingerprint of the first ``length`` bytes of the open file."""

    def __init__(self, handle: BinaryIO | None = None, length: int = 0) -> None:
        self.handle = handle
        self.length = 0
        self.digest = ""
        if handle is not None and length:
            self.take(length)

    def take(self, length: int) -> None:
        """Cover the first ``length`` bytes, if the bytes covered so far are unchanged;
        else the file was replaced under us (``changed`` says so at the next poll)."""
        assert self.handle is not None
        data = os.pread(self.handle.fileno(), length, 0)
        if self.length and hashlib.sha256(data[: self.length]).hexdigest() != self.digest:
            return
        self.length, self.digest = len(data), hashlib.sha256(data).hexdigest()

    def changed(self) -> bool:
        if not self.length or self.handle is None:
            return False
        data = os.pread(self.handle.fileno(), self.length, 0)
        return hashlib.sha256(data).hexdigest() != self.digest


def _same_head(handle: BinaryIO, position: dict[str, Any]) -> bool:
    """Whether the file still starts with the bytes the position was taken after (a
    position written before fingerprints were kept is taken as matching)."""
    length = int(position.get("head_len", 0))
    if not length or "head" not in position:
        return True
    data = os.pread(handle.fileno(), length, 0)
    return bool(hashlib.sha256(data).hexdigest() == position["head"])
