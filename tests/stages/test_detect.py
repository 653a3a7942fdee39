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
