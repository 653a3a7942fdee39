"""The detect stage: alerts per batch, reload on change, bad files keep the old rules."""

from __future__ import annotations

import os
import time
from pathlib import Path

from pipeline.config import RulesConfig
from pipeline.rules.examples import example_event
from pipeline.stages.base import BatchContext
from pipeline.stages.detect import DetectStage

RULE = "rules:\n  - {{id: {id}, title: t, severity: high, condition: {{object: {object}}}}}\n"


def _stage(tmp_path: Path) -> tuple[DetectStage, Path]:
    path = tmp_path / "r.yaml"
    path.write_text(RULE.format(id="R1", object="/a"))
    config = RulesConfig(builtin=False, paths=[tmp_path], reload_check_s=0.001, suppress_s=0)
    return DetectStage(config), path


def _touch(path: Path, text: str) -> None:
    path.write_text(text)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    time.sleep(0.01)  # past reload_check_s


def test_alerts_and_matches_go_on_the_batch_context(tmp_path: Path) -> None:
    stage, _ = _stage(tmp_path)
    ctx = BatchContext()
    events = stage.process([example_event({"category": "file", "object": "/a"}, 0)], ctx)
    assert events[0]["matched_rules"] == ["R1"]
    assert [a.rule_id for a in ctx.alerts] == ["R1"]
    stage.finish(ctx)
    assert ctx.counted("rule_matches", rule_id="R1") == 1
    assert ctx.gauges == {"rules_enabled": 1}
    again = BatchContext()
    stage.finish(again)  # counted once
    assert not again.alerts and not again.counts


def test_a_changed_file_reloads_and_a_broken_one_keeps_the_rules(tmp_path: Path) -> None:
    stage, path = _stage(tmp_path)
    _touch(path, RULE.format(id="R2", object="/b"))
    stage.check_reload()
    ctx = BatchContext()
    stage.process([example_event({"category": "file", "object": "/b"}, 1)], ctx)
    assert [a.rule_id for a in ctx.alerts] == ["R2"]

    _touch(path, "rules:\n  - {id: R3, title: t}\n")
    stage.check_reload()
    assert stage.source.reload_failures == 1
    ctx = BatchContext()
    stage.process([example_event({"category": "file", "object": "/b"}, 2)], ctx)
    assert [a.rule_id for a in ctx.alerts] == ["R2"]
    stage.finish(ctx)
    assert ctx.counted("rules_reload_failures") == 1


def test_a_new_file_in_a_rule_directory_is_picked_up(tmp_path: Path) -> None:
    stage, _ = _stage(tmp_path)
    (tmp_path / "more.yaml").write_text(RULE.format(id="R9", object="/z"))
    time.sleep(0.01)
    stage.check_reload()
    assert {r.id for r in stage.engine.rules} == {"R1", "R9"}


def test_sighup_forces_a_check(tmp_path: Path) -> None:
    stage, _ = _stage(tmp_path)
    stage.config = RulesConfig(builtin=False, paths=[tmp_path], reload_check_s=3600)
    first = stage.engine
    stage.reload_requested = True
    stage.check_reload()  # at once, though reload_check_s has not passed
    assert stage.reload_requested is False and stage.engine is not first
    assert stage.engine.rules == first.rules


HOSTILE = {
    "inf": "condition: {category: file, bytes: {gt: .inf}}",
    "nan": "condition: {category: file, bytes: {lte: .nan}}",
    "neg_inf_list": "condition: {category: file, bytes: [1, -.inf]}",
    "neg_inf": "condition: {category: file, bytes: -.inf}",
    "huge_int": "condition: {category: file, bytes: {gte: " + "9" * 400 + "}}",
    "threshold_nan": "condition: {category: file}\n    threshold: {count: {gte: .nan}, window: 1m}",
    "threshold_inf": "condition: {category: file}\n    threshold: {count: .inf, window: 1m}",
    "late_flag": "condition: {category: file, object: {regex: ['^/etc/', '(?i)/ROOT/']}}",
    "flag_first": "condition: {category: file, object: {regex: ['(?i)^/ETC/', '/root/']}}",
}


def test_no_rule_value_or_pattern_compiles_into_code_that_raises(tmp_path: Path) -> None:
    """Each hostile file is refused (the old rules stay) or loads and runs over events of
    every kind without raising."""
    stage, path = _stage(tmp_path)
    events = [
        example_event({"category": "file", "object": "/Root/x", "bytes": 5}, 1),
        example_event({"category": "file", "object": "/etc/passwd", "bytes": 10**18}, 2),
        example_event({"category": "process", "object": "", "bytes": 0}, 3),
    ]
    refused = set()
    for n, (name, body) in enumerate(HOSTILE.items()):
        _touch(path, f"rules:\n  - id: H{n}\n    title: {name}\n    severity: low\n    {body}\n")
        before, failures = stage.engine, stage.source.reload_failures
        stage.process([dict(e) for e in events], BatchContext())  # reloads; never raises
        if stage.source.reload_failures > failures:
            assert stage.engine is before, name
            refused.add(name)
        else:
            assert [r.id for r in stage.engine.rules] == [f"H{n}"], name
    assert refused == set(list(HOSTILE)[:7])  # the numbers; the patterns load


def test_a_regex_list_with_a_later_inline_flag_matches_each_pattern(tmp_path: Path) -> None:
    stage, path = _stage(tmp_path)
    body = HOSTILE["late_flag"]
    _touch(path, f"rules:\n  - id: F\n    title: t\n    severity: low\n    {body}\n")
    assert stage.reload()
    ctx = BatchContext()
    stage.process([example_event({"category": "file", "object": "/Root/x"}, 1)], ctx)
    assert [a.rule_id for a in ctx.alerts] == ["F"]


def test_any_fault_in_a_reload_keeps_the_rules_in_force(tmp_path: Path) -> None:
    stage, _ = _stage(tmp_path)
    before = stage.engine

    def broken() -> None:
        raise KeyError("a fault of ours, not of the file")

    stage.source.load = broken  # type: ignore[method-assign,assignment]
    assert stage.reload() is False
    assert stage.engine is before and stage.source.reload_failures == 1
