"""Retention: with short TTLs, expired rows leave and the others stay, by class."""

from __future__ import annotations

import time

import pytest

from pipeline.config import Settings
from pipeline.outputs.clickhouse.request_builder import EVENT_COLUMNS, build_event_columns
from pipeline.sim.simulate import FleetSimulator
from tests.integration.helpers import provision, run_cli

pytestmark = pytest.mark.integration


def rows(now_ms: int) -> list[dict[str, object]]:
    """One event per (class, age): debug / info / security, 60 s old or fresh."""
    template = next(iter(FleetSimulator(1, seed=3).events(1)))
    out = []
    for name, level, category, severity in [
        ("debug", "debug", "file", "low"),
        ("info", "info", "process", "low"),
        ("security", "info", "permission", "medium"),
    ]:
        for age in ("old", "new"):
            event = {
                **template,
                "event_id": f"{name}-{age}",
                "level": level,
                "category": category,
                "severity": severity,
                "ts": now_ms - (60_000 if age == "old" else 0),
                "kafka_partition": 0,
                "kafka_offset": 0,
            }
            out.append(event)
    return out


def test_short_ttls_remove_expired_rows_by_class(isolated_settings: Settings) -> None:
    settings = isolated_settings
    # 30 s for debug, 90 s for info, a day for security-relevant rows (in days).
    settings.retention.debug_days = 30 / 86_400
    settings.retention.info_days = 90 / 86_400
    settings.retention.security_days = 1
    client = provision(settings)
    db = settings.clickhouse.database
    events = rows(time.time_ns() // 1_000_000)
    client.insert(
        f"{db}.events",
        build_event_columns(events),
        column_names=list(EVENT_COLUMNS),
        column_oriented=True,
    )

    applied = run_cli(settings, "retention", "apply")
    assert applied.returncode == 0, applied.stderr
    assert (
        "retention applied to events, deadletter, alerts, events_policy_rollup, "
        "events_per_minute, resource_per_minute"
    ) in applied.stdout
    # (ClickHouse shows DELETE, the default action, as nothing.)
    assert "toIntervalSecond(30) WHERE (level = 'debug')" in applied.stdout
    client.command(f"OPTIMIZE TABLE {db}.events FINAL")

    left = sorted(r[0] for r in client.query(f"SELECT event_id FROM {db}.events").result_rows)
    assert left == ["debug-new", "info-new", "info-old", "security-new", "security-old"]
    shown = run_cli(settings, "retention", "show")
    assert f"{db}.events: TTL toDateTime(ts) + toIntervalSecond(30)" in shown.stdout
