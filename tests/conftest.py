"""Fixtures for the real services.

Where Kafka and ClickHouse come from, first that applies:
1. ``AUDITPIPE_KAFKA_BOOTSTRAP`` and ``AUDITPIPE_CLICKHOUSE_URL``;
2. testcontainers, when a Docker daemon answers;
3. the embedded local stack (``pipeline.stack``), started for the session on free ports
   under ``.auditpipe/test-stack`` and stopped at its end.

Every test that uses them gets its own topics, consumer group and ClickHouse database
(``isolated_settings``), so tests never see each other's data.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.stack.process import free_ports

# The fuzz harness runs under atheris (tests/fuzz/sanitized.sh); importing it here, for
# --doctest-modules, would instrument the pipeline for nothing.
collect_ignore = ["fuzz/fuzz_inputs.py"]

REPO = Path(__file__).resolve().parent.parent
TEST_STACK_HOME = REPO / ".auditpipe" / "test-stack"


@dataclass(frozen=True)
class Endpoints:
    kafka_bootstrap: str
    clickhouse_url: str
    source: str


def free_port() -> int:
    return free_ports(1)[0]


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def endpoints() -> Iterator[Endpoints]:
    kafka = os.environ.get("AUDITPIPE_KAFKA_BOOTSTRAP")
    clickhouse = os.environ.get("AUDITPIPE_CLICKHOUSE_URL")
    if kafka and clickhouse:
        yield Endpoints(kafka, clickhouse, "environment")
    elif _docker_answers():
        yield from _containers()
    else:
        yield from _local_stack()


def _containers() -> Iterator[Endpoints]:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs
    from testcontainers.kafka import KafkaContainer

    with (
        KafkaContainer("apache/kafka:4.1.1").with_kraft() as kafka,
        DockerContainer("clickhouse/clickhouse-server:25.8")
        .with_exposed_ports(8123)
        .with_env("CLICKHOUSE_SKIP_USER_SETUP", "1") as clickhouse,
    ):
        wait_for_logs(clickhouse, "Ready for connections", timeout=120)
        url = f"http://{clickhouse.get_container_host_ip()}:{clickhouse.get_exposed_port(8123)}"
        yield Endpoints(kafka.get_bootstrap_server(), url, "testcontainers")


def _local_stack() -> Iterator[Endpoints]:
    from pipeline.stack import LocalStack

    libs = TEST_STACK_HOME / "kafka" / "libs"
    kept_libs = TEST_STACK_HOME.parent / "test-stack-libs"
    if libs.exists():  # keep the broker jars, start with empty data
        shutil.rmtree(kept_libs, ignore_errors=True)
        libs.rename(kept_libs)
    shutil.rmtree(TEST_STACK_HOME, ignore_errors=True)
    if kept_libs.exists():
        libs.parent.mkdir(parents=True)
        kept_libs.rename(libs)
    kafka, controller, http, tcp = free_ports(4)
    settings = Settings(
        home=TEST_STACK_HOME,
        stack={
            "kafka_port": kafka,
            "kafka_controller_port": controller,
            "clickhouse_http_port": http,
            "clickhouse_tcp_port": tcp,
            "kafka_heap": "768m",
        },
    )
    stack = LocalStack(settings)
    try:
        stack.up()
        yield Endpoints(stack.kafka.endpoint, stack.clickhouse.endpoint, "local stack")
    finally:
        stack.down()


@pytest.fixture
def isolated_settings(endpoints: Endpoints, tmp_path: Path) -> Settings:
    """Settings with this test's own topics, consumer group and database."""
    return settings_for(endpoints, tmp_path)


def settings_for(endpoints: Endpoints, folder: Path) -> Settings:
    """Settings with topics, a consumer group and a database of their own (for a
    module-scoped fixture; a test takes ``isolated_settings``)."""
    tag = uuid.uuid4().hex[:10]
    return Settings(
        home=folder / "home",
        kafka={
            "bootstrap": endpoints.kafka_bootstrap,
            "topic_events": f"t{tag}.events",
            "topic_alerts": f"t{tag}.alerts",
            "topic_deadletter": f"t{tag}.deadletter",
            "topic_sandboxes": f"t{tag}.sandboxes",
            "topic_checkpoints": f"t{tag}.checkpoints",
            "topic_deferred": f"t{tag}.deferred",
            "partitions": 3,
        },
        clickhouse={"url": endpoints.clickhouse_url, "database": f"test_{tag}"},
        worker={"app_id": f"auditpipe-test-{tag}", "web_port": free_port(), "take_within_s": 0.1},
    )
