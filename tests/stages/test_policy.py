"""The level policy: thresholds per environment and category, counts, reloads."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from pipeline.outputs.clickhouse.tables import LINK_COLUMNS, link_columns, rollup_columns
from pipeline.stages.base import BatchContext
from pipeline.stages.policy import Policy, PolicyError, PolicyFile, PolicyStage

MINUTE = 1_795_860_000_000


def ev(level: str, category: str = "file", environment: str = "prod", **extra: Any) -> dict:
    return {
        "level": level,
        "category": category,
        "environment": environment,
        "ts": MINUTE + 5,
        "tenant": "acme",
        "sandbox_id": "sb-1",
        **extra,
    }


def stage_with(tmp_path: Path, text: str) -> tuple[PolicyStage, Path]:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return PolicyStage(PolicyFile(path)), path


def test_below_threshold_is_counted_not_kept(tmp_path: Path) -> None:
    stage, _ = stage_with(tmp_path, "default: info\nenvironments: {prod: warning, dev: debug}\n")
    events = [
        ev("debug"),
        ev("info"),
        ev("warning"),
        ev("debug", environment="dev"),
        ev("info", environment="other"),
        ev("debug", environment="other"),
    ]
    ctx = BatchContext()
    kept = stage.process(events, ctx)
    assert [(e["level"], e["environment"]) for e in kept] == [
        ("warning", "prod"),
        ("debug", "dev"),
        ("info", "other"),
    ]
    assert ctx.counted("events_dropped_by_policy", level="debug", category="file") == 2
    assert ctx.counted("events_dropped_by_policy", level="info", category="file") == 1
    assert ctx.counted("events_dropped_by_policy") == 3
    columns = rollup_columns(ctx.kept_back.items())
    rows = sorted(zip(*columns, strict=True))
    minute = MINUTE // 1000 // 60 * 60
    assert rows == [
        (minute, "acme", "sb-1", "other", "file", "debug", 1),
        (minute, "acme", "sb-1", "prod", "file", "debug", 1),
        (minute, "acme", "sb-1", "prod", "file", "info", 1),
    ]
    assert rollup_columns(BatchContext().kept_back.items()) == []


def test_category_overrides_and_rule_matches_are_kept(tmp_path: Path) -> None:
    stage, _ = stage_with(tmp_path, "default: warning\noverrides: {prod: {auth: debug}}\n")
    kept = stage.process(
        [
            ev("info", "auth"),
            ev("info", "file"),
            ev("info", "file", matched_rules=["reverse-shell"]),
        ],
        BatchContext(),
    )
    assert [(e["category"], bool(e.get("matched_rules"))) for e in kept] == [
        ("auth", False),
        ("file", True),
    ]


def test_the_file_is_reloaded_when_it_changes_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    stage, path = stage_with(tmp_path, "default: debug\n")
    assert len(stage.process([ev("debug")], BatchContext())) == 1
    path.write_text("default: error\n")
    os.utime(path, ns=(1, 10**18))  # a new mtime even within the clock's resolution
    assert stage.process([ev("warning")], BatchContext()) == []
    path.write_text("default: loud\n")
    os.utime(path, ns=(1, 2 * 10**18))
    assert stage.process([ev("warning")], BatchContext()) == []  # the previous policy stays
    assert stage.source.policy.default == 4


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"default": "loud"}, "default: 'loud' is not one of"),
        ({"environments": {"dev": 3}}, "environments.dev: 3 is not one of"),
        ({"overrides": {"dev": "info"}}, "overrides.dev must map categories"),
        ({"defaults": "info"}, "unknown key 'defaults'"),
    ],
)
def test_invalid_policies_name_the_place(data: Any, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        Policy.parse(data)


def test_no_policy_keeps_everything() -> None:
    stage = PolicyStage(PolicyFile(None))
    events = [ev("debug"), ev("info")]
    assert stage.process(events, BatchContext()) == events


def test_chained_events_kept_back_leave_their_links_for_verify(tmp_path: Path) -> None:
    stage, _ = stage_with(tmp_path, "default: info\n")
    chained = ev("debug", seq=7, hash=b"h" * 32, prev_hash=b"p" * 32)
    first = ev("debug", seq=1, hash=b"f" * 32, prev_hash=None)
    unchained = ev("debug", seq=None, hash=None, prev_hash=None)
    ctx = BatchContext()
    assert stage.process([chained, first, unchained, ev("info")], ctx) == [ev("info")]
    columns = dict(zip(LINK_COLUMNS, link_columns(ctx.links), strict=True))
    assert columns["seq"] == [7, 1]
    assert columns["hash"] == [b"h" * 32, b"f" * 32]
    assert columns["prev_hash"] == [b"p" * 32, bytes(32)]  # the genesis link
    assert link_columns([]) == []
