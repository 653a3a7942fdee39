"""Signed checkpoints: signatures, rows, and which chain heads get one."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.checkpoints import NoKey, checkpoint_columns, load_key, sign, valid
from pipeline.collect.chain import ChainHead
from pipeline.config import Settings
from pipeline.rules.examples import example_event
from pipeline.rules.integrity import ChainMonitor

KEY = b"0123456789abcdef0123456789abcdef"


def test_any_changed_part_breaks_the_signature() -> None:
    good = ("acme", "sb-1", 42, "ab" * 32, 1_795_000_000_000)
    signature = sign(KEY, *good)
    assert valid(KEY, *good, signature)
    for changed in (
        ("globex", "sb-1", 42, "ab" * 32, 1_795_000_000_000),
        ("acme", "sb-2", 42, "ab" * 32, 1_795_000_000_000),
        ("acme", "sb-1", 43, "ab" * 32, 1_795_000_000_000),
        ("acme", "sb-1", 42, "cd" * 32, 1_795_000_000_000),
        ("acme", "sb-1", 42, "ab" * 32, 1_795_000_000_001),
    ):
        assert not valid(KEY, *changed, signature)  # type: ignore[arg-type]
    assert not valid(b"another key", *good, signature)


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
    columns = checkpoint_columns([("acme", "sb-1", 5, "ef" * 32)], KEY, "k1", 1000)
    tenant, sandbox, seq, digest, at, key_id, algorithm, signature = (c[0] for c in columns)
    assert (tenant, sandbox, seq, digest, at, key_id, algorithm) == (
        "acme", "sb-1", 5, bytes.fromhex("ef" * 32), 1000, "k1", "hmac-sha256",
    )  # fmt: skip
    assert valid(KEY, "acme", "sb-1", 5, "ef" * 32, 1000, signature)


def test_the_key_file_is_created_once_and_private(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    with pytest.raises(NoKey):
        load_key(settings, create=False)
    key = load_key(settings)
    assert load_key(settings, create=False) == key and len(key) == 64
    assert (tmp_path / "checkpoint.key").stat().st_mode & 0o777 == 0o600
    assert load_key(Settings(home=tmp_path, checkpoints={"key": "secret"})) == b"secret"
