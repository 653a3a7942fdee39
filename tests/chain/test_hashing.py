"""The hash chain: fixed vector, continuity, and what tampering does to it."""

from __future__ import annotations

import hashlib
import itertools

from pipeline.chain.hashing import GENESIS, ChainHead, canonical, link
from pipeline.sim.simulate import FleetSimulator

VECTOR_EVENT = {
    "event_id": "0b7e5c1e-2f7a-4d0c-9a57-1f1f3e9a0001",
    "ts": 1795860000000,
    "tenant": "acme",
    "sandbox_id": "sb-1",
    "seq": 1,
    "category": "file",
    "action": "read",
    "level": "info",
    "outcome": "success",
    "actor": {
        "user": "ci",
        "uid": 1000,
        "pid": 42,
        "ppid": 1,
        "process": "cat",
        "cmdline": "cat /etc/hosts",
    },
    "object": "/etc/hosts",
    "bytes": 187,
    "attributes": {"cwd": "/work", "tty": "pts/0"},
}


def test_fixed_vector() -> None:
    """Pins the canonical encoding: a change here breaks every stored chain."""
    expected = (
        b"36:0b7e5c1e-2f7a-4d0c-9a57-1f1f3e9a0001"
        b"13:1795860000000"
        b"4:acme"
        b"4:sb-1"
        b"1:1"
        b"4:file"
        b"4:read"
        b"4:info"
        b"7:success"
        b"2:ci"
        b"4:1000"
        b"2:42"
        b"1:1"
        b"3:cat"
        b"14:cat /etc/hosts"
        b"10:/etc/hosts"
        b"3:187"
        b"1:2"
        b"3:cwd"
        b"5:/work"
        b"3:tty"
        b"5:pts/0"
    )
    assert canonical(VECTOR_EVENT) == expected
    assert link(GENESIS, VECTOR_EVENT).hex() == hashlib.sha256(bytes(32) + expected).hexdigest()
    assert link(GENESIS, VECTOR_EVENT).hex() == (
        "968eaaedc324e6190a4845a4831b4c538198d51f8c3e9fc5e4405e2f2a7b09a9"
    )


def test_seal_numbers_and_links_events() -> None:
    head = ChainHead()
    events = [head.seal(e) for e in FleetSimulator(1, seed=1).events(5)]
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]
    assert events[0]["prev_hash"] == GENESIS
    for before, after in itertools.pairwise(events):
        assert after["prev_hash"] == before["hash"] == link(before["prev_hash"], before)


def test_any_change_changes_the_hash() -> None:
    base = link(GENESIS, VECTOR_EVENT)
    for field, value in [
        ("object", "/etc/shadow"),
        ("seq", 2),
        ("ts", 1795860000001),
        ("bytes", None),
        ("attributes", {"cwd": "/work"}),
    ]:
        assert link(GENESIS, {**VECTOR_EVENT, field: value}) != base, field
    actor = {**VECTOR_EVENT["actor"], "uid": 0}  # type: ignore[dict-item]
    assert link(GENESIS, {**VECTOR_EVENT, "actor": actor}) != base


def test_field_boundaries_are_unambiguous() -> None:
    a = {**VECTOR_EVENT, "tenant": "ab", "sandbox_id": "c"}
    b = {**VECTOR_EVENT, "tenant": "a", "sandbox_id": "bc"}
    assert canonical(a) != canonical(b)
    assert canonical({**VECTOR_EVENT, "bytes": None}) != canonical({**VECTOR_EVENT, "bytes": 0})


def test_lengths_count_utf8_bytes_and_keys_sort_by_bytes() -> None:
    event = {**VECTOR_EVENT, "object": "/données/报告", "attributes": {"é": "1", "z": "2"}}
    encoded = canonical(event)
    assert "16:/données/报告".encode() in encoded  # 1+8+1+6 bytes, 11 characters
    assert encoded.endswith(b"1:2" + b"1:z1:2" + "2:é1:1".encode())


def with_parent(process: str | None, cmdline: str | None) -> dict[str, object]:
    actor = {**VECTOR_EVENT["actor"], "parent_process": process, "parent_cmdline": cmdline}  # type: ignore[dict-item]
    return {**VECTOR_EVENT, "actor": actor}


def test_an_event_without_a_parent_keeps_its_version_1_bytes() -> None:
    """Schema v2 added the parent: every chain stored before it (the fixed vector's hash
    is the one version 1 gave) and every v1 collector's event, read as v2 with empty
    parent fields, must still verify."""
    v1 = canonical(VECTOR_EVENT)
    for process, cmdline in (("", ""), (None, None), ("", None)):
        assert canonical(with_parent(process, cmdline)) == v1
    assert link(GENESIS, with_parent("", "")).hex() == (
        "968eaaedc324e6190a4845a4831b4c538198d51f8c3e9fc5e4405e2f2a7b09a9"
    )


def test_a_parent_is_appended_and_pinned() -> None:
    event = with_parent("/usr/bin/make", "make -j4 ci")
    assert canonical(event) == canonical(VECTOR_EVENT) + b"13:/usr/bin/make11:make -j4 ci"
    assert (
        link(GENESIS, event).hex()
        == hashlib.sha256(
            bytes(32) + canonical(VECTOR_EVENT) + b"13:/usr/bin/make11:make -j4 ci"
        ).hexdigest()
    )
    # either one alone counts, the other as an empty value
    assert canonical(with_parent("", "x")).endswith(b"3:tty5:pts/00:1:x")
    assert canonical(with_parent("x", "")).endswith(b"5:pts/01:x0:")


def test_a_parent_cannot_be_added_removed_or_moved_unseen() -> None:
    base = link(GENESIS, with_parent("/usr/bin/make", "make ci"))
    for process, cmdline in (("", ""), ("/usr/bin/make", ""), ("/usr/bin/make", "make ci "),
                             ("", "/usr/bin/make"), ("make ci", "/usr/bin/make")):  # fmt: skip
        assert link(GENESIS, with_parent(process, cmdline)) != base, (process, cmdline)
    # the parent's bytes are not an attribute's: the attribute count tells them apart
    moved = {**VECTOR_EVENT, "attributes": {**VECTOR_EVENT["attributes"], "a": "b"}}  # type: ignore[dict-item]
    assert canonical(moved) != canonical(with_parent("a", "b"))
