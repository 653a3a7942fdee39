"""`auditpipe stack`: a second, private local stack on free ports (real Kafka, real
ClickHouse): it refuses taken ports, reports status, and keeps data across a restart."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from pipeline.config import Settings
from pipeline.outputs.clickhouse.client import connect
from pipeline.stack import LocalStack, StackError
from tests.conftest import TEST_STACK_HOME, free_ports
from tests.integration.helpers import run_cli

pytestmark = pytest.mark.integration


def private_settings(home: Path) -> Settings:
    kafka_port, controller_port, http_port, tcp_port = free_ports(4)
    # Reuse the broker jars the session's stack fetched, when it did.
    libs = TEST_STACK_HOME / "kafka" / "libs"
    if libs.exists():
        (home / "kafka").mkdir(parents=True)
        (home / "kafka" / "libs").symlink_to(libs)
    return Settings(
        home=home,
        kafka={"bootstrap": f"127.0.0.1:{kafka_port}"},
        clickhouse={"url": f"http://127.0.0.1:{http_port}"},
        stack={
            "kafka_port": kafka_port,
            "kafka_controller_port": controller_port,
            "clickhouse_http_port": http_port,
            "clickhouse_tcp_port": tcp_port,
            "kafka_heap": "512m",
        },
    )


def test_a_taken_port_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    settings = private_settings(tmp_path / "home")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", settings.stack.clickhouse_http_port))
        squatter.listen()
        with pytest.raises(StackError) as info:
            LocalStack(settings).up()
        result = run_cli(settings, "stack", "up")
    message = f"port {settings.stack.clickhouse_http_port} on 127.0.0.1 is already in use"
    assert message in str(info.value)
    assert result.returncode == 3
    assert message in result.stderr
    assert LocalStack(settings).clickhouse.process.pid() is None


async def _produce(bootstrap: str, topic: str, value: bytes) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 1, 1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    await producer.send_and_wait(topic, value)
    await producer.stop()


async def _consume_one(bootstrap: str, topic: str) -> bytes:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        async with asyncio.timeout(60):
            message = await consumer.getone()
            return bytes(message.value)
    finally:
        await consumer.stop()


def test_status_and_data_survive_a_restart(tmp_path: Path) -> None:
    settings = private_settings(tmp_path / "home")
    stack = LocalStack(settings)
    try:
        stack.up()
        assert all(s.answering and s.pid for s in stack.status())
        asyncio.run(_produce(settings.kafka.bootstrap, "kept", b"before restart"))
        client = connect(settings.clickhouse)
        client.command("CREATE TABLE default.kept (n UInt32) ENGINE = MergeTree ORDER BY n")
        client.insert("default.kept", [[1], [2], [3]], column_names=["n"])

        stack.down()
        status = run_cli(settings, "stack", "status")
        assert status.returncode == 3
        assert "stopped" in status.stdout

        stack.up()
        client = connect(settings.clickhouse)
        assert client.query("SELECT sum(n) FROM default.kept").result_rows == [(6,)]
        assert asyncio.run(_consume_one(settings.kafka.bootstrap, "kept")) == b"before restart"
    finally:
        stack.down()
