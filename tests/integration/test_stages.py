"""The worker's stages on the real path: redaction is visible in the stored rows and no raw
secret reaches ClickHouse; events the validate stage rejects land in the dead letters."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import orjson
import pytest

from pipeline.collect.publisher import EventPublisher
from pipeline.config import Settings
from pipeline.schema import codec_for
from pipeline.schema.event import normalize_event
from tests.integration.helpers import (
    WorkerProcess,
    provision,
    read_topic,
    wait_for_metrics,
    wait_for_rows,
)

pytestmark = pytest.mark.integration

SECRETS = {
    "aws": "AKIAIOSFODNN7EXAMPLE",
    "password": "hunter2-Secret!",
    "bearer": "eyJhbGciOiJIUzI1NiJ9.e30.ZRrHA1JJJW8opsbCGfG_HACGpVUMN_a9IV7pAx_Zmeo",
    "email": "alice.liddell@example.com",
}


def events_with_secrets(now_ms: int) -> list[dict[str, object]]:
    raw = [
        {
            "category": "process",
            "action": "exec",
            "object": "/usr/bin/aws",
            "actor": {"user": "ci", "cmdline": f"env AWS_ACCESS_KEY_ID={SECRETS['aws']} aws s3 ls"},
        },
        {
            "category": "process",
            "action": "exec",
            "object": "/usr/bin/mysql",
            "actor": {"cmdline": f"mysql -u root --password={SECRETS['password']} prod"},
        },
        {
            "category": "api",
            "action": "get",
            "object": "https://api.example.com/v1/me",
            "attributes": {"header": f"Authorization: Bearer {SECRETS['bearer']}"},
        },
        {
            "category": "auth",
            "action": "login",
            "object": "sso",
            "actor": {"user": SECRETS["email"]},
        },
        {"category": "file", "action": "read", "object": "/etc/hosts"},
    ]
    return [
        normalize_event(
            {"tenant": "acme", "sandbox_id": "sb-secrets", "seq": n + 1, "ts": now_ms, **fields},
            now_ms=now_ms,
        )
        for n, fields in enumerate(raw)
    ]


async def publish(settings: Settings, events: list[dict[str, object]]) -> None:
    async with EventPublisher(settings, codec_for(settings.kafka.schema_registry_url)) as publisher:
        await publisher.add_many(events)


def test_no_raw_secret_reaches_clickhouse_and_bad_events_are_dead_lettered(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    settings = isolated_settings
    # A rule that fires on the events carrying secrets: its alerts must not carry them.
    rules = tmp_path / "secret-rules.yaml"
    rules.write_text(
        "rules:\n  - {id: T-SECRET-CMD, title: credential on a command line, "
        "severity: high, condition: {actor.cmdline: {contains: [aws, mysql]}}}\n"
    )
    settings.rules.paths = [rules]
    client = provision(settings)
    now = time.time_ns() // 1_000_000
    good = events_with_secrets(now)
    future = normalize_event(
        {
            "tenant": "acme",
            "sandbox_id": "sb-secrets",
            "seq": 6,
            "category": "config",
            "action": "set",
            "ts": now + 3_600_000,
            # Dead-lettered (ts in the future): stored masked there too.
            "actor": {"cmdline": f"vault login -password={SECRETS['password']}"},
        },
        now_ms=now,
    )
    huge = normalize_event(
        {
            "tenant": "acme",
            "sandbox_id": "sb-secrets",
            "seq": 7,
            "category": "file",
            "action": "write",
            "object": "/tmp/x",
            "attributes": {"dump": "x" * 70_000},
        },
        now_ms=now,
    )
    asyncio.run(publish(settings, [*good, future, huge]))

    db = settings.clickhouse.database
    with WorkerProcess(settings):
        wait_for_rows(client, f"{db}.events", len(good))
        wait_for_rows(client, f"{db}.deadletter", 2)
        wait_for_rows(client, f"{db}.alerts", 1)  # both in one sandbox: one alert
        metrics = wait_for_metrics(settings, "auditpipe_events_in_total 7.0")
    on_topic = read_topic(settings)
    assert "T-SECRET-CMD" in {a["rule_id"] for a in on_topic}
    alert_rows = client.query(f"SELECT toJSONString(tuple(*)) FROM {db}.alerts").result_rows
    alert_text = orjson.dumps(on_topic).decode() + " ".join(row[0] for row in alert_rows)
    for name, secret in SECRETS.items():
        assert secret not in alert_text, f"raw {name} secret in an alert"

    stored = client.query(f"SELECT toJSONString(tuple(*)) FROM {db}.events").result_rows
    dead_letters = client.query(f"SELECT original FROM {db}.deadletter").result_rows
    everything = " ".join(row[0] for row in stored) + " ".join(str(r[0]) for r in dead_letters)
    for name, secret in SECRETS.items():
        assert secret not in everything, f"raw {name} secret stored"
    rows = {
        r[0]: r[1:]
        for r in client.query(
            f"SELECT seq, actor_cmdline, actor_user, attributes FROM {db}.events"
        ).result_rows
    }
    # Each mask names its rule and a keyed tag of the secret (8 hex digits).
    tag = r"\[REDACTED:{}:[0-9a-f]{{8}}\]"
    assert re.fullmatch(
        f"env AWS_ACCESS_KEY_ID={tag.format('aws_access_key')} aws s3 ls", rows[1][0]
    )
    assert re.fullmatch(f"mysql -u root --password={tag.format('secret_flag')} prod", rows[2][0])
    assert re.fullmatch(f"Authorization: Bearer {tag.format('bearer_token')}", rows[3][2]["header"])
    assert re.fullmatch(tag.format("email"), rows[4][1])
    assert rows[1][2]["auditpipe.redacted"] == "aws_access_key@actor.cmdline"
    assert "auditpipe.redacted" not in rows[5][2]
    reasons = dict(
        client.query(
            f"SELECT reason, JSONExtractInt(original, 'seq') FROM {db}.deadletter"
        ).result_rows
    )
    assert reasons == {"ts_in_future": 6, "oversized_field": 7}
    assert "auditpipe_events_in_total 7.0" in metrics
    assert "auditpipe_events_stored_total 5.0" in metrics
    assert 'auditpipe_deadletter_total{reason="ts_in_future"} 1.0' in metrics
    # Masked at the edge (the publisher), so the worker's stage had nothing left to mask.
    assert 'auditpipe_redactions_total{rule="email"}' not in metrics
    assert 'auditpipe_consumer_lag{partition="' in metrics
    assert (
        orjson.loads(
            client.query(
                f"SELECT original FROM {db}.deadletter WHERE reason = 'ts_in_future'"
            ).result_rows[0][0]
        )["action"]
        == "set"
    )
