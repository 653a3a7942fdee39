"""Bad input never stops the pipeline and is never lost: rejected at publish with its line
number, or dead-lettered by the worker with its reason."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from pipeline.config import Settings
from pipeline.schema.codec import AvroCodec
from pipeline.schema.registry import SchemaRegistry
from tests.integration.helpers import (
    WorkerProcess,
    provision,
    run_cli,
    scalar,
    wait_for_rows,
)

pytestmark = pytest.mark.integration

RECENT_MS = time.time_ns() // 1_000_000 - 60_000
"""A minute ago: stored events must be within validation.max_past_s of the worker's clock."""


def good(n: int) -> bytes:
    return orjson.dumps(
        {
            "tenant": "acme",
            "sandbox_id": "sb-bad",
            "category": "file",
            "action": "read",
            "object": f"/etc/file{n}",
            "ts": datetime.fromtimestamp(RECENT_MS / 1000, UTC).isoformat(),
        }
    )


def test_publish_reports_bad_lines_and_publishes_the_rest(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    settings = isolated_settings
    client = provision(settings)
    lines = [
        good(1),
        b'{"tenant": "acme", "sandbox_id": ',  # 2: malformed JSON
        good(3),
        orjson.dumps(
            {
                "tenant": "acme",
                "sandbox_id": "sb-bad",
                "category": "file",
                "action": "read",
                "seq": "seven",
            }
        ),  # 4: wrong type
        orjson.dumps({"sandbox_id": "sb-bad", "category": "file", "action": "read"}),  # 5
        orjson.dumps(
            {"tenant": "acme", "sandbox_id": "sb-bad", "category": "dance", "action": "read"}
        ),  # 6: not a category
        b"",
        good(8),
    ]
    source = tmp_path / "mixed.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")

    result = run_cli(settings, "publish", str(source))

    assert result.returncode == 1
    errors = result.stderr.splitlines()
    assert ":2: invalid JSON" in errors[0]
    assert any(":4: seq: expected an integer, got str" in e for e in errors)
    assert any(":5: tenant: required" in e for e in errors)
    assert any(":6: category: 'dance' is not one of" in e for e in errors)
    assert "published 3 events" in result.stdout
    assert "rejected 4 bad lines" in result.stdout
    with WorkerProcess(settings):
        wait_for_rows(client, f"{settings.clickhouse.database}.events", 3)
    objects = client.query(
        f"SELECT object, seq FROM {settings.clickhouse.database}.events ORDER BY seq"
    ).result_rows
    assert objects == [("/etc/file1", 1), ("/etc/file3", 2), ("/etc/file8", 3)]


async def _send_raw(settings: Settings, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(settings.kafka.topic_events, value, key=b"sb-raw")
    finally:
        await producer.stop()


async def _read_dead_letters(settings: Settings, count: int) -> list[dict[str, object]]:
    codec = AvroCodec(SchemaRegistry.load())
    consumer = AIOKafkaConsumer(
        settings.kafka.topic_deadletter,
        bootstrap_servers=settings.kafka.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[dict[str, object]] = []
    try:
        async with asyncio.timeout(60):
            while len(records) < count:
                batch = await consumer.getmany(timeout_ms=1000)
                for messages in batch.values():
                    records.extend(codec.decode(m.value).record for m in messages)
    finally:
        await consumer.stop()
    return records


def test_worker_dead_letters_undecodable_messages_and_goes_on(isolated_settings: Settings) -> None:
    settings = isolated_settings
    client = provision(settings)
    codec = AvroCodec(SchemaRegistry.load())
    valid = codec.encode(
        "audit_event_batch",
        {
            "sandbox_id": "sb-raw",
            "collector": "test",
            "sent_at": 0,
            "events": [
                {
                    "event_id": "ok-1",
                    "ts": RECENT_MS,
                    "tenant": "acme",
                    "sandbox_id": "sb-raw",
                    "seq": 1,
                    "category": "api",
                    "action": "get",
                    "level": "info",
                    "outcome": "success",
                    "actor": {
                        "user": "",
                        "uid": None,
                        "pid": None,
                        "ppid": None,
                        "process": "",
                        "cmdline": "",
                    },
                    "object": "GET /",
                    "bytes": None,
                    "attributes": {},
                    "prev_hash": None,
                    "hash": None,
                },
                {
                    "event_id": "no-tenant",
                    "ts": RECENT_MS + 1,
                    "tenant": "",
                    "sandbox_id": "sb-raw",
                    "seq": 2,
                    "category": "api",
                    "action": "get",
                    "level": "info",
                    "outcome": "success",
                    "actor": {
                        "user": "",
                        "uid": None,
                        "pid": None,
                        "ppid": None,
                        "process": "",
                        "cmdline": "",
                    },
                    "object": "GET /",
                    "bytes": None,
                    "attributes": {},
                    "prev_hash": None,
                    "hash": None,
                },
            ],
        },
    )
    unknown_fp = b"\xc3\x01" + b"\x01" * 8 + b"\x00"
    asyncio.run(_send_raw(settings, [b"not avro at all", unknown_fp, valid[:-3], valid]))

    db = settings.clickhouse.database
    with WorkerProcess(settings):
        wait_for_rows(client, f"{db}.events", 1)
        wait_for_rows(client, f"{db}.deadletter", 4)

    reasons = sorted(r[0] for r in client.query(f"SELECT reason FROM {db}.deadletter").result_rows)
    assert reasons == ["corrupt_body", "invalid_event", "not_avro", "unknown_schema"]
    assert scalar(client, f"SELECT event_id FROM {db}.events") == "ok-1"
    stored_original = scalar(
        client, f"SELECT original FROM {db}.deadletter WHERE reason = 'not_avro'"
    )
    assert stored_original == "not avro at all"
    dead = asyncio.run(_read_dead_letters(settings, 4))
    by_reason = {d["reason"]: d for d in dead}
    assert set(by_reason) == set(reasons)
    assert by_reason["not_avro"]["original"] == b"not avro at all"
    assert by_reason["invalid_event"]["event_id"] == "no-tenant"
    assert by_reason["unknown_schema"]["source_topic"] == settings.kafka.topic_events
