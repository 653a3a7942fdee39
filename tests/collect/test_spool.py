"""The collector's spool: groups survive a crash whole or not at all."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pipeline.collect.spool import Spool, SpooledMessage


def message(sandbox: str, first: int, last: int) -> SpooledMessage:
    return SpooledMessage(sandbox, first, last, last - first + 1, f"{sandbox}:{first}".encode())


def test_groups_and_state_are_recovered_in_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path, fsync=False)
    spool.append_group(1, [message("a", 1, 10), message("b", 1, 5)], {"heads": {"a": [10, "x"]}})
    spool.append_group(2, [message("a", 11, 12)], {"heads": {"a": [12, "y"]}, "sources": {"f": 7}})
    spool.close()

    recovered = Spool(tmp_path, fsync=False).recover()

    assert [g.number for g in recovered.unacked] == [1, 2]
    assert recovered.unacked[0].messages[1] == message("b", 1, 5)
    assert recovered.state == {"heads": {"a": [12, "y"]}, "sources": {"f": 7}}
    assert recovered.next_group == 3


def test_acknowledged_groups_are_not_recovered(tmp_path: Path) -> None:
    spool = Spool(tmp_path, fsync=False)
    for number in (1, 2, 3):
        spool.append_group(number, [message("a", number, number)], {})
    spool.acknowledge(2)
    spool.close()
    again = Spool(tmp_path, fsync=False)
    assert [g.number for g in again.recover().unacked] == [3]
    assert again.acked == 2


def test_a_torn_acknowledgement_leaves_its_groups_unacknowledged(tmp_path: Path) -> None:
    # ACK records are not fsynced on their own: a crash may tear the last one.
    spool = Spool(tmp_path / "ref", fsync=False)
    spool.append_group(1, [message("a", 1, 3)], {"n": 1})
    spool.append_group(2, [message("a", 4, 6)], {"n": 2})
    (segment,) = (tmp_path / "ref").glob("*.spool")
    groups = segment.read_bytes()
    spool.acknowledge(2)
    spool.close()
    with_ack = segment.read_bytes()
    assert len(with_ack) > len(groups)

    for cut in range(len(groups), len(with_ack)):
        folder = tmp_path / f"cut{cut}"
        folder.mkdir()
        (folder / segment.name).write_bytes(with_ack[:cut])
        again = Spool(folder, fsync=False)
        recovered = again.recover()
        assert [g.number for g in recovered.unacked] == [1, 2], cut
        assert (again.acked, recovered.next_group, recovered.state) == (0, 3, {"n": 2})


def test_a_torn_group_is_dropped_whole_at_every_cut(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "ref", fsync=False)
    spool.append_group(1, [message("a", 1, 3)], {"n": 1})
    spool.close()
    (segment,) = (tmp_path / "ref").glob("*.spool")
    first_group = segment.read_bytes()
    spool = Spool(tmp_path / "ref", fsync=False)
    spool.append_group(2, [message("a", 4, 6), message("b", 1, 1)], {"n": 2})
    spool.close()
    both = segment.read_bytes()

    for cut in range(len(first_group), len(both)):  # a crash at every byte of group 2
        folder = tmp_path / f"cut{cut}"
        folder.mkdir()
        (folder / segment.name).write_bytes(both[:cut])
        recovered = Spool(folder, fsync=False).recover()
        assert [g.number for g in recovered.unacked] == [1], cut
        assert recovered.state == {"n": 1}
        assert recovered.next_group == 2
        assert recovered.discarded_bytes == cut - len(first_group)
        assert (folder / segment.name).stat().st_size == len(first_group)


def test_fully_acknowledged_segments_are_deleted(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=100, fsync=False)
    for number in range(1, 6):
        spool.append_group(number, [message("a", number, number)], {})
    assert len(list(tmp_path.glob("*.spool"))) > 1  # ~2 groups fit in 100 bytes
    spool.acknowledge(4)
    remaining = sorted(p.name for p in tmp_path.glob("*.spool"))
    assert remaining == ["000000000005.spool"]
    assert [g.number for g in spool.read_groups(after=4)] == [5]


def test_the_spool_is_readable_by_its_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    """Spooled events are not masked by the worker yet: 0700 folder, 0600 segments, also
    for a folder and segments left readable before."""
    folder = tmp_path / "spool"
    old = os.umask(0o002)
    try:
        spool = Spool(folder, fsync=False)
        spool.write_group(1, [message("sb-1", 1, 3)], {})()
        spool.close()
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        segments = list(folder.iterdir())
        assert segments and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in segments)
        folder.chmod(0o755)
        for path in segments:
            path.chmod(0o644)
        Spool(folder, fsync=False).close()
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in segments)
    finally:
        os.umask(old)
