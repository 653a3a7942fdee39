"""Seals and horizons (pipeline/chain/seals.py): what they sign, what they let verify accept,
and the class of a row computed from chained fields only."""

from __future__ import annotations

import re

from pipeline.chain.checkpoint_check import CheckpointReport, _check_chain
from pipeline.chain.checkpoints import GENESIS, sign
from pipeline.chain.retention import SECURITY, events_ttl, expiry_sql
from pipeline.chain.seals import (
    HorizonRecord,
    Retained,
    SealRecord,
    sign_horizon,
    sign_seal,
)
from pipeline.config import RetentionConfig

KEY = b"k" * 32
SEAL = SealRecord("acme", "sb-1", 11, 20, "aa" * 32, "bb" * 32, 10, 0, 9, 100, 130, 500, 7)


def test_every_value_of_a_seal_is_signed() -> None:
    signed = sign_seal(KEY, SEAL)
    for field, other in [
        ("tenant", "globex"), ("sandbox_id", "sb-2"), ("first_seq", 10), ("last_seq", 21),
        ("prev_hash", "cc" * 32), ("hash", "cc" * 32), ("expires_from_s", 99),
        ("expires_to_s", 131), ("keep_until_s", 501), ("sealed_at_ms", 8),
    ]:  # fmt: skip
        assert sign_seal(KEY, SEAL._replace(**{field: other})) != signed, field
    assert sign_seal(b"x" * 32, SEAL) != signed


def test_values_cannot_slide_into_each_other() -> None:
    # ("a|b", "c") must not sign like ("a", "b|c"), nor "1","12" like "11","2".
    a = SEAL._replace(tenant="a|b", sandbox_id="c")
    b = SEAL._replace(tenant="a", sandbox_id="b|c")
    assert sign_seal(KEY, a) != sign_seal(KEY, b)
    h = HorizonRecord("t", "s", 1, "00" * 32, 12, "00" * 32, 0, 0)
    assert sign_horizon(KEY, h) != sign_horizon(KEY, h._replace(seq=11, counter=2))
    # A seal's signature is not a horizon's (the kind is signed too).
    assert sign_seal(KEY, SEAL) != sign_horizon(KEY, h)


def test_a_signed_head_may_be_gone_only_inside_a_due_seal_or_before_the_horizon() -> None:
    retained = Retained(seals={("acme", "sb-1"): [SEAL]})
    sandbox = ("acme", "sb-1")
    assert not retained.covers(sandbox, 15, "ff" * 32, now_s=99)  # expiry not due yet
    assert retained.covers(sandbox, 15, "ff" * 32, now_s=100)  # inside: no hash to compare
    assert retained.covers(sandbox, 20, "BB" * 32, now_s=100)  # its last: the sealed hash
    assert not retained.covers(sandbox, 20, "ff" * 32, now_s=100)  # another hash: rewritten
    assert not retained.covers(sandbox, 21, "bb" * 32, now_s=100)  # past the seal
    assert not retained.covers(("globex", "sb-1"), 15, "ff" * 32, now_s=100)  # other tenant
    retained.horizons[sandbox] = HorizonRecord(*sandbox, 30, "dd" * 32, 3, "ee" * 32, 0, 0)
    assert retained.covers(sandbox, 25, "ff" * 32, now_s=0)
    assert retained.covers(sandbox, 30, "dd" * 32, now_s=0)
    assert not retained.covers(sandbox, 30, "ff" * 32, now_s=0)
    assert not retained.covers(sandbox, 31, "ff" * 32, now_s=0)


def test_the_checkpoint_chain_may_start_at_the_horizon_and_nowhere_else() -> None:
    first = sign(KEY, "t", "s", 1, 5, "00", 0, GENESIS)
    second = sign(KEY, "t", "s", 2, 9, "00", 1, first)
    third = sign(KEY, "t", "s", 3, 12, "00", 2, second)
    after_horizon = [(3, second, third, 12)]
    report = CheckpointReport()
    _check_chain(report, "t", "s", after_horizon, (2, second))
    assert report.findings == []
    _check_chain(report, "t", "s", after_horizon)  # no horizon: 1 and 2 are missing
    assert [f.detail for f in report.findings] == [
        "checkpoints 1..2 are missing: removed (or rolled back)"
    ]
    report = CheckpointReport()
    _check_chain(report, "t", "s", after_horizon, (2, first))  # a horizon of another chain
    assert "does not follow" in report.findings[0].detail


def test_the_class_of_a_row_comes_from_chained_fields_only() -> None:
    # The stored severity is derived by the worker and covered by no hash: a row whose
    # severity an insider lowers must not expire sooner.
    config = RetentionConfig(debug_days=3, info_days=30, security_days=365)
    for sql in (SECURITY, events_ttl(config), expiry_sql(config)):
        assert "severity" not in sql
    assert re.findall(r"(\d{6,})", expiry_sql(config)) == [
        "31536000", "259200", "2592000"
    ]  # fmt: skip
