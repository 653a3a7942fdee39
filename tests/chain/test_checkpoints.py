"""Signed checkpoints: signatures, rows, and which chain heads get one."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.chain.checkpoints import (
    ALGORITHM,
    CHECKPOINT_COLUMNS,
    GENESIS,
    CheckpointSigner,
    NoKey,
    checkpoint_columns,
    load_key,
    sign,
    valid,
)
from pipeline.chain.hashing import ChainHead
from pipeline.config import Settings
from pipeline.rules.examples import example_event
from pipeline.rules.integrity import ChainMonitor

KEY = b"0123456789abcdef0123456789abcdef"


def test_any_changed_part_breaks_the_signature() -> None:
    good = ("acme", "sb-1", 3, 42, "ab" * 32, 1_795_000_000_000, b"p" * 32)
    signature = sign(KEY, *good)
    assert valid(KEY, *good, signature)
    for index, changed in enumerate(
        ("globex", "sb-2", 4, 43, "cd" * 32, 1_795_000_000_001, b"q" * 32)
    ):
        altered = list(good)
        altered[index] = changed
        assert not valid(KEY, *altered, signature)  # type: ignore[arg-type]
    assert not valid(b"another key", *good, signature)


def test_the_message_is_length_prefixed_so_no_value_can_borrow_from_the_next() -> None:
    assert sign(KEY, "a|b", "c", 1, 1, "00", 0, GENESIS) != sign(KEY, "a", "b|c", 1, 1, "00", 0,
                                                                  GENESIS)  # fmt: skip
    assert sign(KEY, "a1", "2", 1, 1, "00", 0, GENESIS) != sign(KEY, "a", "12", 1, 1, "00", 0,
                                                                 GENESIS)  # fmt: skip


def test_each_sandbox_has_a_chain_of_checkpoints_that_continues_from_the_store() -> None:
    asked = []

    def stored_last(sandboxes: set[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, bytes]]:
        asked.append(sorted(sandboxes))
        return {("acme", "sb-1"): (7, b"s" * 32)}  # signed before a restart

    signer = CheckpointSigner(KEY, "k1", stored_last)
    first = signer.sign([("acme", "sb-1", 10, "aa" * 32), ("acme", "sb-2", 3, "bb" * 32)], 1000)
    second = signer.sign([("acme", "sb-1", 12, "cc" * 32)], 2000)
    assert asked == [[("acme", "sb-1"), ("acme", "sb-2")]]  # loaded once per sandbox
    assert [(c.sandbox_id, c.counter, c.prev_signature) for c in first] == [
        ("sb-1", 8, b"s" * 32),
        ("sb-2", 1, GENESIS),
    ]
    (next_one,) = second
    assert (next_one.counter, next_one.prev_signature) == (9, first[0].signature)
    assert valid(KEY, "acme", "sb-1", 9, 12, "cc" * 32, 2000, first[0].signature,
                 next_one.signature)  # fmt: skip


def test_heads_that_advanced_are_checkpointed_once() -> None:
    monitor = ChainMonitor()
    head = ChainHead()
    events = [head.seal(example_event({"category": "file", "action": "read"}, i)) for i in range(3)]
    for event in events:
        monitor.check(event)
    assert monitor.take_checkpoints() == [("example", "sb-example", 3, events[2]["hash"].hex())]
    assert monitor.take_checkpoints() == []
    monitor.check(head.seal(example_event({"category": "file", "action": "read"}, 3)))
    assert [c[2] for c in monitor.take_checkpoints()] == [4]


def test_rows_carry_the_signature_of_their_content() -> None:
    signer = CheckpointSigner(KEY, "k1", lambda sandboxes: {})
    columns = checkpoint_columns(signer.sign([("acme", "sb-1", 5, "ef" * 32)], 1000))
    row = dict(zip(CHECKPOINT_COLUMNS, (c[0] for c in columns), strict=True))
    assert (row["tenant"], row["seq"], row["hash"], row["signed_at"], row["key_id"]) == (
        "acme", 5, bytes.fromhex("ef" * 32), 1000, "k1",
    )  # fmt: skip
    assert (row["algorithm"], row["counter"], row["prev_signature"]) == (ALGORITHM, 1, GENESIS)
    assert valid(KEY, "acme", "sb-1", 1, 5, "ef" * 32, 1000, GENESIS, row["signature"])


def test_the_key_file_is_created_once_and_private(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    with pytest.raises(NoKey):
        load_key(settings, create=False)
    key = load_key(settings)
    assert load_key(settings, create=False) == key and len(key) == 64
    assert (tmp_path / "checkpoint.key").stat().st_mode & 0o777 == 0o600
    assert load_key(Settings(home=tmp_path, checkpoints={"key": "secret"})) == b"secret"
