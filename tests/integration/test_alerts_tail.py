"""``auditpipe alerts tail``: --limit stops after that many alerts, and a consumer group
resumes right after the last one shown (none skipped, none twice)."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from pipeline.commands.init import create_topics
from pipeline.config import Settings
from pipeline.rules.alerts import make_alert
from pipeline.schema import codec_for
from tests.integration.helpers import run_cli

pytestmark = pytest.mark.integration


def publish_alerts(settings: Settings, n: int) -> list[str]:
    codec = codec_for(settings.kafka.schema_registry_url)
    alerts = [
        make_alert("R1", "t", "high", ("x",), "acme", f"sb-{i}", i, i, 1, [f"e{i}"])
        for i in range(n)
    ]

    async def go() -> None:
        await create_topics(settings)
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap)
        await producer.start()
        try:
            for alert in alerts:
                value = codec.encode("alert", alert.record())
                await producer.send_and_wait(settings.kafka.topic_alerts, value, key=b"k")
        finally:
            await producer.stop()

    asyncio.run(go())
    return [a.alert_id for a in alerts]


def test_limit_stops_and_a_group_resumes_after_the_last_shown(
    isolated_settings: Settings,
) -> None:
    settings = isolated_settings
    ids = publish_alerts(settings, 5)
    common = ("alerts", "tail", "--json", "--group", "soc", "--idle-timeout", "5")
    first = run_cli(settings, *common, "--limit", "2")
    assert first.returncode == 0, first.stderr
    shown = [orjson.loads(line)["alert_id"] for line in first.stdout.splitlines()]
    assert shown == ids[:2]
    rest = run_cli(settings, *common, "--limit", "10")
    assert [orjson.loads(line)["alert_id"] for line in rest.stdout.splitlines()] == ids[2:]
