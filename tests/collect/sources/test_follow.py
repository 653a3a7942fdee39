"""Following a file across what rotation and copytruncate do to it, including while the
collector is down: no line is ever skipped."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from pipeline.collect.sources.follow import IDLE, FileFollower


def read_all(path: Path, position: dict[str, Any] | None) -> tuple[list[bytes], dict[str, Any]]:
    follower = FileFollower(path, follow=False, position=position)

    async def take() -> tuple[list[bytes], dict[str, Any]]:
        lines, after = [], position or {}
        async for line in follower.lines():
            lines.append(line.data)
            after = line.after
        return lines, after

    return asyncio.run(take())


def lines(prefix: str, n: int) -> bytes:
    return b"".join(f"{prefix} line {i:03d} of the day\n".encode() for i in range(n))


def test_copytruncate_grown_back_past_the_position_while_down_is_read_from_the_start(
    tmp_path: Path,
) -> None:
    """Same inode, a size past the saved offset: only the fingerprint of the first bytes
    tells that the file was emptied and written again."""
    log = tmp_path / "app.log"
    log.write_bytes(lines("old", 10))
    first, position = read_all(log, None)
    assert len(first) == 10
    inode = log.stat().st_ino
    with log.open("r+b") as handle:  # copytruncate, in place
        handle.truncate(0)
        handle.write(lines("new", 30))
    assert log.stat().st_ino == inode and log.stat().st_size > position["offset"]

    again, _ = read_all(log, position)

    assert again == lines("new", 30).splitlines()


def test_a_file_that_only_grew_resumes_where_it_stopped(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(lines("a", 3))
    _, position = read_all(log, None)
    with log.open("ab") as handle:
        handle.write(lines("b", 2))
    assert read_all(log, position)[0] == lines("b", 2).splitlines()
    # A position written before fingerprints were kept still resumes.
    legacy = {k: position[k] for k in ("inode", "offset", "line")}
    assert read_all(log, legacy)[0] == lines("b", 2).splitlines()


def test_a_reused_inode_is_not_taken_for_the_rotated_file(tmp_path: Path) -> None:
    """Rotated while down, and the old inode now holds another file among the siblings:
    its bytes differ, so it is not resumed at the old offset."""
    log = tmp_path / "app.log"
    log.write_bytes(lines("old", 5))
    _, position = read_all(log, None)
    os.rename(log, tmp_path / "app.log.1")
    (tmp_path / "app.log.1").write_bytes(lines("other", 50))  # same inode, other bytes
    log.write_bytes(lines("new", 3))

    assert read_all(log, position)[0] == lines("new", 3).splitlines()


def test_a_truncate_and_regrow_between_polls_is_seen_while_following(tmp_path: Path) -> None:
    """Lines read from the middle of the new content before the next poll may come twice
    (or cut), but every new line is read from the start."""
    log = tmp_path / "app.log"
    log.write_bytes(lines("old", 5))
    follower = FileFollower(log, follow=True, poll_s=0.01)

    async def run() -> list[bytes]:
        seen: list[bytes] = []
        async for line in follower.lines():
            seen.append(line.data)
            if len(seen) == 5:
                with log.open("r+b") as handle:  # emptied and refilled past us at once
                    handle.truncate(0)
                    handle.write(lines("new", 8))
            if seen[-1] == b"new line 007 of the day" and follower.truncations:
                return seen
        return seen

    seen = asyncio.run(asyncio.wait_for(run(), 5))
    restart = seen.index(b"new line 000 of the day")
    assert seen[restart:] == lines("new", 8).splitlines()
    assert follower.truncations == 1


def test_a_quiet_followed_file_says_so_once_per_quiet_spell(tmp_path: Path) -> None:
    """IDLE lets a parser complete what it holds (auditd without EOE) on a quiet file."""
    log = tmp_path / "audit.log"
    log.write_bytes(b"one\ntwo\n")
    follower = FileFollower(log, follow=True, poll_s=0.01, idle_s=0.05)

    async def run() -> list[bytes | str]:
        seen: list[bytes | str] = []
        async for line in follower.lines():
            seen.append("IDLE" if line is IDLE else line.data)
            if seen.count("IDLE") == 1 and seen[-1] == "IDLE":
                with log.open("ab") as handle:
                    handle.write(b"three\n")
            if seen.count("IDLE") == 2:
                return seen
        return seen

    assert asyncio.run(asyncio.wait_for(run(), 10)) == [b"one", b"two", "IDLE", b"three", "IDLE"]
