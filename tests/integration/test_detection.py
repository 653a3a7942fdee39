"""Detection on the real path: simulator attacks in, alerts out on the topics and in
ClickHouse; windows survive a worker restart; rules reload without one."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.schema.event import normalize_event
from pipeline.sim.scenarios import SCENARIOS
from pipeline.sim.simulate import FleetSimulator
from tests.integration.helpers import (
    WorkerProcess,
    provision,
    publish_events,
    read_topic,
    scalar,
    wait_for_rows,
    wait_until,
)
from tests.rules.test_pack import EXPECTED

pytestmark = pytest.mark.integration


def test_attack_scenarios_raise_alerts_on_the_topics_and_in_clickhouse(
    isolated_settings: Settings,
) -> None:
    settings = isolated_settings
    critical_topic = settings.kafka.topic_alerts + ".critical"
    settings.rules.routes = {"critical": critical_topic}
    client = provision(settings)
    db = settings.clickhouse.database
    simulator = FleetSimulator(sandboxes=12, tenants=3, seed=5)
    events = list(simulator.events(6000, scenarios=sorted(SCENARIOS)))
    wanted = set().union(*EXPECTED.values())

    with WorkerProcess(settings):
        publish_events(settings, events)
        wait_for_rows(client, f"{db}.events", len(events))

        def all_rules_alerted() -> bool:
            rows = client.query(f"SELECT DISTINCT rule_id FROM {db}.alerts").result_rows
            return wanted <= {r[0] for r in rows}

        wait_until(all_rules_alerted, 60, "not every expected rule alerted")
        on_topic = read_topic(settings)
        routed = read_topic(settings, critical_topic)

    stored = client.query(
        f"SELECT toString(alert_id), rule_id, severity, sandbox_id, evidence FROM {db}.alerts"
    ).result_rows
    attacked = {e["sandbox_id"] for e in events if e["attributes"].get("sim.scenario")}
    assert {row[3] for row in stored} == attacked  # the benign sandboxes raised nothing
    assert {a["alert_id"] for a in on_topic} == {row[0] for row in stored}
    assert scalar(client, f"SELECT count() FROM {db}.alerts") == len(stored)
    assert {a["alert_id"] for a in routed} == {r[0] for r in stored if r[2] == "critical"}
    # Every evidence event is stored, and says which rule it matched.
    evidence = {(event_id, row[1]) for row in stored for event_id in row[4]}
    found = client.query(
        f"SELECT event_id, arrayJoin(matched_rules) FROM {db}.events "
        "WHERE length(matched_rules) > 0"
    ).result_rows
    assert evidence <= {(str(e), r) for e, r in found}


def failures(sandbox: str, n: int, start: int) -> list[dict[str, object]]:
    now = time.time_ns() // 1_000_000
    return [
        normalize_event(
            {
                "tenant": "acme",
                "sandbox_id": sandbox,
                "seq": start + i,
                "category": "auth",
                "action": "login",
                "outcome": "failure",
                "object": "sshd",
                "ts": now + i,
            },
            now_ms=now,
        )
        for i in range(n)
    ]


RULES = """
rules:
  - id: T-BRUTE
    title: four failures
    severity: high
    condition: {category: auth, outcome: failure}
    threshold: {window: 10m, count: {gte: 4}}
"""


def test_windows_survive_a_restart_and_rules_reload_without_one(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "brute.yaml").write_text(RULES)
    settings = isolated_settings
    settings.rules.builtin = False
    settings.rules.paths = [rules_dir]
    settings.rules.reload_check_s = 0.2
    client = provision(settings)
    db = settings.clickhouse.database

    with WorkerProcess(settings):
        publish_events(settings, failures("sb-r", 2, 1))
        wait_for_rows(client, f"{db}.events", 2)
    assert scalar(client, f"SELECT count() FROM {db}.alerts") == 0

    with WorkerProcess(settings, name="worker2") as worker:
        # Two more after the restart: four in the window only if the first two survived.
        publish_events(settings, failures("sb-r", 2, 3))
        wait_for_rows(client, f"{db}.alerts", 1)
        assert scalar(client, f"SELECT rule_id FROM {db}.alerts") == "T-BRUTE"

        (rules_dir / "marker.yaml").write_text(
            "rules:\n  - {id: T-MARK, title: marker, severity: low, "
            "condition: {object: /reload-marker}}\n"
        )
        time.sleep(1.0)
        marker = failures("sb-m", 1, 1)[0] | {"category": "file", "object": "/reload-marker"}
        publish_events(settings, [marker])
        wait_for_rows(client, f"{db}.alerts", 2)

        (rules_dir / "broken.yaml").write_text("rules:\n  - {id: T-BAD, title: x}\n")
        time.sleep(1.0)
        wait_until(lambda: "rules not reloaded" in worker.log(), 30, "no reload error logged")
        # Another sandbox (no suppression): the rules in force still alert.
        other = failures("sb-m2", 1, 1)[0] | {"category": "file", "object": "/reload-marker"}
        publish_events(settings, [other])
        wait_until(
            lambda: (
                scalar(client, f"SELECT count() FROM {db}.alerts WHERE rule_id = 'T-MARK'") == 2
            ),
            30,
            "the rules in force stopped working after a bad reload",
        )
        log = worker.log()
    assert "broken.yaml:2: T-BAD: severity '' is not one of" in log


def test_a_publisher_that_skips_a_seq_raises_an_integrity_alert(
    isolated_settings: Settings,
) -> None:
    settings = isolated_settings
    client = provision(settings)
    db = settings.clickhouse.database
    now = time.time_ns() // 1_000_000
    events = [
        normalize_event(
            {
                "tenant": "acme",
                "sandbox_id": "sb-gap",
                "seq": seq,
                "category": "file",
                "action": "read",
                "object": f"/f{seq}",
                "ts": now + seq,
            },
            now_ms=now,
        )
        for seq in (1, 2, 3, 5, 6)
    ]
    with WorkerProcess(settings):
        publish_events(settings, events)
        wait_for_rows(client, f"{db}.alerts", 1)
        on_topic = read_topic(settings)
    rows = client.query(f"SELECT rule_id, sandbox_id, evidence, tags FROM {db}.alerts").result_rows
    assert rows == [("AP-INT-GAP", "sb-gap", [events[3]["event_id"]], list(rows[0][3]))]
    assert "integrity" in rows[0][3]
    assert [a["rule_id"] for a in on_topic] == ["AP-INT-GAP"]


def test_the_alerts_of_a_year_old_backfilled_log_are_stored(isolated_settings: Settings) -> None:
    """Alerts expire by when they were raised: a backfilled year-old log's alerts are
    stored (ClickHouse drops rows already expired at insert, by their TTL)."""
    settings = isolated_settings
    settings.validation.backfill_tenants = {"archive": 400 * 86_400}
    client = provision(settings)
    db = settings.clickhouse.database
    year_ago = time.time_ns() // 1_000_000 - 366 * 86_400_000
    events = [
        normalize_event(
            {
                "tenant": "archive",
                "sandbox_id": "sb-old",
                "seq": n + 1,
                "ts": year_ago + n,
                "category": "file",
                "action": "read",
                "object": "/etc/shadow",
                "actor": {"user": "www-data", "process": "cat", "cmdline": "cat /etc/shadow"},
            },
            now_ms=year_ago,
        )
        for n in range(3)
    ]
    with WorkerProcess(settings):
        publish_events(settings, events)
        wait_for_rows(client, f"{db}.events", 3)
        wait_until(lambda: bool(read_topic(settings)), 60, "no alert on the topic")
        wait_until(
            lambda: client.command(f"SELECT count() FROM {db}.alerts") > 0,
            60,
            "the year-old log's alerts never reached audit.alerts",
        )
    assert client.command(f"SELECT min(last_ts) < now() - INTERVAL 365 DAY FROM {db}.alerts") == 1
