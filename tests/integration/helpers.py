"""Running the real CLI and worker as processes, against a test's isolated settings."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import yaml
from clickhouse_connect.driver.client import Client
from pydantic import SecretStr

from pipeline.commands.init import apply_migrations, create_topics, load_migrations
from pipeline.config import Settings
from pipeline.outputs.clickhouse.client import connect
from pipeline.worker.watchdog import STALL_EXIT_STATUS

STARTED_WORKERS: list[WorkerProcess] = []
"""Every worker the running test started, for the failure report (see conftest.py)."""


def config_file(settings: Settings) -> Path:
    """The settings as a YAML file (what a user would write), for child processes."""
    path = settings.home / "auditpipe.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(revealed(settings.model_dump(mode="python"))))
    return path


def revealed(value: Any) -> Any:
    """Settings as plain YAML values, secrets included (``mode="json"`` masks them, as
    `auditpipe config` must; a child process needs them)."""
    if isinstance(value, dict):
        return {key: revealed(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [revealed(item) for item in value]
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Path):
        return str(value)
    return value


def child_env(settings: Settings) -> dict[str, str]:
    # Settings come from the config file alone; AUDITPIPE_NATIVE is not a setting.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AUDITPIPE_") or k == "AUDITPIPE_NATIVE"
    }
    env["AUDITPIPE_CONFIG"] = str(config_file(settings))
    return env


def run_cli(
    settings: Settings, *args: str, stdin: bytes | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env(settings),
        check=False,
    )


def publish_events(settings: Settings, events: list[dict[str, Any]]) -> None:
    """Publish events through the SDK publisher (one message per sandbox batch)."""
    from pipeline.collect.publisher import EventPublisher
    from pipeline.schema import codec_for

    async def go() -> None:
        async with EventPublisher(
            settings, codec_for(settings.kafka.schema_registry_url)
        ) as publisher:
            await publisher.add_many(events)

    asyncio.run(go())


def wait_for_metrics(settings: Settings, expected: str, timeout: float = 30) -> str:
    """The worker's /metrics page once it contains ``expected`` (a batch's counters follow
    its insert by a moment)."""
    import urllib.request

    url = f"http://127.0.0.1:{settings.worker.web_port}/metrics"
    page = [""]

    def counted() -> bool:
        with urllib.request.urlopen(url, timeout=10) as reply:
            page[0] = reply.read().decode()
        return expected in page[0]

    wait_until(counted, timeout, f"/metrics never showed {expected!r}: {page[0][-2000:]}")
    return page[0]


def read_topic(settings: Settings, topic: str | None = None) -> list[dict[str, object]]:
    """The alerts on the alerts topic (or topic), from the beginning, as JSON records."""
    from pipeline.commands.alerts import tail

    lines: list[str] = []
    asyncio.run(
        tail(
            settings,
            as_json=True,
            from_beginning=True,
            idle_timeout_s=3,
            topic=topic,
            out=lines.append,
        )
    )
    return [orjson.loads(line) for line in lines]


def with_clickhouse(settings: Settings, **changes: Any) -> Settings:
    """The settings with ``clickhouse.<name>`` changed (validated as a whole, as a
    configuration file would be)."""
    data = settings.model_dump()
    data["clickhouse"] |= changes
    return Settings(**data)


def provision(settings: Settings) -> Client:
    """`auditpipe init` for the test's topics and database; returns a ClickHouse client."""
    asyncio.run(create_topics(settings))
    client = connect(settings.clickhouse)
    apply_migrations(client, settings.clickhouse.database, load_migrations())
    return client


class WorkerProcess:
    """A real `auditpipe worker` process."""

    def __init__(self, settings: Settings, name: str = "worker") -> None:
        self.settings = settings
        self.log_path = settings.home / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        """Restarts after a stall exit (status 75), as a supervisor would do them."""
        self._supervising = threading.Event()

    def start(self, ready_timeout: float = 90) -> WorkerProcess:
        STARTED_WORKERS.append(self)
        self._spawn(ready_timeout)
        self._supervising.set()
        threading.Thread(target=self._supervise, daemon=True).start()
        return self

    def _spawn(self, ready_timeout: float) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pipeline.cli", "worker"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=child_env(self.settings),
            )
        wait_until(
            lambda: "Worker ready" in self.log(offset),
            ready_timeout,
            f"worker not ready; log:\n{self.log(offset)[-3000:]}",
            alive=self.proc,
        )

    def _supervise(self) -> None:
        """Restart the worker when it exits with STALL_EXIT_STATUS, like systemd's
        Restart=on-failure or a Kubernetes pod would; other exits are left alone."""
        while self._supervising.is_set():
            proc = self.proc
            if proc is not None and proc.poll() == STALL_EXIT_STATUS and self._supervising.is_set():
                self.restarts += 1
                self._spawn(90)
            time.sleep(0.5)

    def log(self, offset: int = 0) -> str:
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as handle:
            handle.seek(offset)
            return handle.read().decode(errors="replace")

    def stop(self) -> int | None:
        self._supervising.clear()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None

    def kill(self) -> None:
        self._supervising.clear()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def wait_until(
    condition: Callable[[], bool],
    timeout: float,
    message: str,
    alive: subprocess.Popen[bytes] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if alive is not None and alive.poll() is not None:
            raise AssertionError(f"process exited with {alive.returncode}: {message}")
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f} s: {message}")


def scalar(client: Client, sql: str) -> Any:
    return client.query(sql).result_rows[0][0]


def wait_for_rows(client: Client, table: str, expected: int, timeout: float = 120) -> int:
    """Wait until table holds expected rows; returns the count (fails on timeout)."""
    last = [0]

    def enough() -> bool:
        last[0] = int(scalar(client, f"SELECT count() FROM {table}"))
        return last[0] >= expected

    try:
        wait_until(enough, timeout, f"{table} does not hold {expected} rows")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: it holds {last[0]}") from None
    return last[0]


def collect_events(settings: Settings, spool: Path, events: list[dict[str, Any]]) -> None:
    """Emit events through a real Collector (chained, spooled, delivered) and wait until
    Kafka acknowledged them."""
    from pipeline.collect.collector import Collector

    async def go() -> None:
        async with Collector(settings, spool_dir=spool) as collector:
            await collector.emit_many(events)
            await collector.flush()

    asyncio.run(go())


def private_secured_stack(home: Path, libs: Path, heap: str = "512m") -> Any:
    """A secured local stack (``stack up --secure``) on free ports under ``home``, not
    started; the broker jars linked from ``libs`` when they are there."""
    from pipeline.stack import LocalStack
    from pipeline.stack.process import free_ports

    kafka, controller, mtls, http, tcp = free_ports(5)
    if libs.exists():
        (home / "kafka").mkdir(parents=True)
        (home / "kafka" / "libs").symlink_to(libs)
    ports = {
        "kafka_port": kafka,
        "kafka_controller_port": controller,
        "kafka_mtls_port": mtls,
        "clickhouse_http_port": http,
        "clickhouse_tcp_port": tcp,
    }
    return LocalStack(Settings(home=home, stack={"secure": True, "kafka_heap": heap, **ports}))
