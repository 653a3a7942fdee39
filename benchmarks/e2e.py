"""End-to-end benchmark: publish, worker throughput and latency, and a no-framework baseline.

    python benchmarks/e2e.py [--events 1000000] [--runs 3]

Needs the local stack (`auditpipe stack up`) or AUDITPIPE_KAFKA_BOOTSTRAP /
AUDITPIPE_CLICKHOUSE_URL. Each run uses its own topic, consumer groups and database, and
measures, on the same pre-published events:

* publish: ``auditpipe publish`` of a JSON-lines file (parse, validate, encode, send), and
  the SDK path (``EventPublisher.add`` of ready events), events/s acknowledged by Kafka;
* worker: a real ``auditpipe worker`` process, events/s from ready to the last row
  stored, three times: decode, validate and the sink (dedup, redaction and detection
  off; enrichment and the level policy always run); the stream stages of issue 4
  (validate, dedup, enrich, policy, redact; detection off); and the default
  configuration, which adds detection with the 30 rules of the default pack; and the
  peak RSS of the last;
* baseline: a plain aiokafka consumer that decodes and inserts with clickhouse-connect,
  no Faust and no stages, events/s on the same topic;
* latency: with a worker running, events paced at ``--latency-rate`` events/s, each
  stamped with its emit time; p50/p99 of (row's ingested_at - emit time) in ClickHouse.

It prints a table of medians over the runs; figures go to benchmarks/RESULTS.md by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import process_memory_mb
from pipeline.collect.publisher import EventPublisher, now_ms
from pipeline.commands.init import apply_migrations, create_topics, load_migrations
from pipeline.config import Settings, load_settings
from pipeline.outputs.clickhouse.client import connect
from pipeline.outputs.clickhouse.request_builder import build_event_columns
from pipeline.schema import codec_for
from pipeline.schema.event import event_to_json
from pipeline.sim.simulate import FleetSimulator
from pipeline.stages.base import BatchContext
from pipeline.stages.decode import RawMessage, decode_messages
from tests.conftest import free_port
from tests.integration.helpers import WorkerProcess, child_env, scalar


def isolated(base: Settings, tag: str, home: Path) -> Settings:
    data = base.model_dump()
    data["home"] = home
    data["kafka"].update(
        topic_events=f"bench{tag}.events",
        topic_alerts=f"bench{tag}.alerts",
        topic_deadletter=f"bench{tag}.dlq",
        topic_sandboxes=f"bench{tag}.sandboxes",
        topic_checkpoints=f"bench{tag}.checkpoints",
        topic_deferred=f"bench{tag}.deferred",
    )
    data["clickhouse"]["database"] = f"bench_{tag}"
    data["worker"].update(app_id=f"bench-{tag}", web_port=0)
    return Settings(**data)


def variant(settings: Settings, suffix: str, **sections: dict[str, Any]) -> Settings:
    """The same topic, its own consumer group, deferred topic and database, some
    settings changed."""
    data = settings.model_dump()
    data["worker"]["app_id"] += suffix
    data["worker"]["web_port"] = free_port()
    data["kafka"]["topic_deferred"] += suffix  # each worker defers into its own
    data["clickhouse"]["database"] += suffix
    for section, values in sections.items():
        data[section].update(values)
    changed = Settings(**data)
    apply_migrations(connect(changed.clickhouse), changed.clickhouse.database, load_migrations())
    return changed


def write_jsonl(path: Path, events: int, sandboxes: int) -> None:
    with path.open("wb") as out:
        for event in FleetSimulator(sandboxes, seed=1).events(events):
            out.write(orjson.dumps(event_to_json(event)))
            out.write(b"\n")


def measure_publish_cli(settings: Settings, source: Path, events: int) -> float:
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "publish", str(source)],
        capture_output=True,
        text=True,
        env=child_env(settings),
        check=True,
    )
    # "published N events in M messages (R events/s); ..."
    published = int(result.stdout.split()[1])
    if published != events:
        raise RuntimeError(f"publish acknowledged {published} of {events} events")
    return float(result.stdout.split("(")[1].split(" events/s")[0].replace(",", ""))


async def measure_publish_sdk(settings: Settings, events: int, sandboxes: int) -> float:
    generated = list(FleetSimulator(sandboxes, seed=2).events(events))
    codec = codec_for(settings.kafka.schema_registry_url)
    async with EventPublisher(settings, codec, client_id="bench") as publisher:
        started = time.perf_counter()
        await publisher.add_many(generated)
        await publisher.flush()
        elapsed = time.perf_counter() - started
    return events / elapsed


def measure_worker(settings: Settings, client: Any, total: int) -> tuple[float, float]:
    table = f"{settings.clickhouse.database}.events"
    worker = WorkerProcess(settings, name="bench-worker")
    worker.start()
    started = time.perf_counter()
    while int(scalar(client, f"SELECT count() FROM {table}")) < total:
        if time.perf_counter() - started > 900:
            raise RuntimeError("worker did not store every event within 15 minutes")
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    peak_rss_mb = process_memory_mb(worker.proc.pid if worker.proc else 0, "VmHWM")
    worker.stop()
    return total / elapsed, peak_rss_mb


async def measure_baseline(settings: Settings, total: int) -> float:
    """aiokafka + our Avro codec + clickhouse-connect, nothing else."""
    client = connect(settings.clickhouse)
    table = f"{settings.clickhouse.database}.baseline"
    client.command(f"CREATE TABLE {table} AS {settings.clickhouse.database}.events")
    codec = codec_for(settings.kafka.schema_registry_url)
    consumer = AIOKafkaConsumer(
        settings.kafka.topic_events,
        bootstrap_servers=settings.kafka.bootstrap,
        group_id=f"baseline-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 << 20,
    )
    await consumer.start()
    stored = 0
    try:
        await consumer.seek_to_beginning()
        started = time.perf_counter()
        while stored < total:
            batch = await consumer.getmany(timeout_ms=500, max_records=64)
            messages = [
                RawMessage(m.partition, m.offset, m.key, m.value)
                for records in batch.values()
                for m in records
            ]
            if not messages:
                continue
            ctx = BatchContext(settings.kafka.topic_events)
            for part in decode_messages(codec, messages, ctx).values():
                from pipeline.outputs.clickhouse.request_builder import (
                    EVENT_COLUMNS,
                    REPEAT_COLUMNS,
                )

                client.insert(
                    table,
                    build_event_columns(part.events, repeats=False),
                    column_names=list(EVENT_COLUMNS[:-REPEAT_COLUMNS]),
                    column_oriented=True,
                )
                stored += len(part.events)
            await consumer.commit()
        return stored / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def measure_latency(
    settings: Settings, client: Any, rate: float, seconds: float, sandboxes: int
) -> tuple[float, float, int]:
    """Emit at `rate` with a worker running; p50/p99 of ingested_at - emit time (ms)."""
    sim = FleetSimulator(sandboxes, seed=3)
    codec = codec_for(settings.kafka.schema_registry_url)
    total = int(rate * seconds)
    tick = 0.01
    async with EventPublisher(settings, codec, client_id="bench-latency") as publisher:
        started = time.monotonic()
        stream = sim.events(total)
        sent = 0
        while sent < total:
            due = min(total, int(rate * (time.monotonic() - started + tick)))
            while sent < due:
                event = next(stream)
                event["ts"] = now_ms()
                await publisher.add(event)
                sent += 1
            await asyncio.sleep(tick)
    table = f"{settings.clickhouse.database}.events"
    deadline = time.monotonic() + 120
    while (
        int(
            scalar(client, f"SELECT count() FROM {table} WHERE sandbox_id LIKE 'sb-{sim.run_id}-%'")
        )
        < total
    ):
        if time.monotonic() > deadline:
            raise RuntimeError("latency events not all stored within 120 s")
        await asyncio.sleep(0.2)
    p50, p99 = client.query(
        f"SELECT quantileExact(0.5)(lat), quantileExact(0.99)(lat) FROM (SELECT "
        f"toUnixTimestamp64Milli(ingested_at) - toUnixTimestamp64Milli(ts) AS lat "
        f"FROM {table} WHERE sandbox_id LIKE 'sb-{sim.run_id}-%')"
    ).result_rows[0]
    return float(p50), float(p99), total


def one_run(base: Settings, args: argparse.Namespace, source: Path, run: int) -> dict[str, float]:
    tag = uuid.uuid4().hex[:8]
    home = Path(tempfile.mkdtemp(prefix=f"auditpipe-bench-{tag}-"))
    settings = isolated(base, tag, home)
    settings.worker.web_port = free_port()
    asyncio.run(create_topics(settings))
    client = connect(settings.clickhouse)
    apply_migrations(client, settings.clickhouse.database, load_migrations())
    try:
        print(f"run {run}: publishing {args.events:,} events (auditpipe publish) ...", flush=True)
        publish_cli = measure_publish_cli(settings, source, args.events)
        print(f"run {run}: worker, decode + validate + sink ...", flush=True)
        minimal = variant(
            settings,
            "m",
            dedup={"enabled": False},
            redact={"enabled": False},
            rules={"enabled": False},
        )
        worker_minimal, _ = measure_worker(minimal, client, args.events)
        print(f"run {run}: worker, stream stages (dedup, enrich, policy, redact) ...", flush=True)
        stages = variant(settings, "s", rules={"enabled": False})
        worker_stages, _ = measure_worker(stages, client, args.events)
        print(f"run {run}: worker, default configuration (+ detection) ...", flush=True)
        worker_rate, rss = measure_worker(settings, client, args.events)
        print(f"run {run}: baseline ...", flush=True)
        baseline_rate = asyncio.run(measure_baseline(settings, args.events))
        sdk_settings = isolated(base, tag + "s", home)
        asyncio.run(create_topics(sdk_settings))
        print(f"run {run}: SDK publish ...", flush=True)
        publish_sdk = asyncio.run(
            measure_publish_sdk(sdk_settings, args.sdk_events, args.sandboxes)
        )
        print(f"run {run}: latency at {args.latency_rate:,.0f} events/s ...", flush=True)
        with WorkerProcess(settings, name="latency-worker"):
            p50, p99, _ = asyncio.run(
                measure_latency(
                    settings, client, args.latency_rate, args.latency_seconds, args.sandboxes
                )
            )
    finally:
        client.command(f"DROP DATABASE IF EXISTS {settings.clickhouse.database}")
        shutil.rmtree(home, ignore_errors=True)
    figures = {
        "publish_cli": publish_cli,
        "publish_sdk": publish_sdk,
        "worker_decode_sink": worker_minimal,
        "worker_stages": worker_stages,
        "worker_default": worker_rate,
        "baseline": baseline_rate,
        "decode_sink_over_baseline": worker_minimal / baseline_rate,
        "p50_ms": p50,
        "p99_ms": p99,
        "worker_peak_rss_mb": rss,
    }
    print(f"run {run}: " + ", ".join(f"{k}={v:,.2f}" for k, v in figures.items()), flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--sdk-events", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sandboxes", type=int, default=200)
    parser.add_argument("--latency-rate", type=float, default=20_000)
    parser.add_argument("--latency-seconds", type=float, default=15)
    args = parser.parse_args()
    base = load_settings()
    print(
        f"machine: {platform.node()} {platform.processor() or platform.machine()}, "
        f"{_cores()} cores, Python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "events.jsonl"
        write_jsonl(source, args.events, args.sandboxes)
        results = [one_run(base, args, source, run) for run in range(1, args.runs + 1)]
    print(f"\nmedians of {args.runs} runs, {args.events:,} events each:")
    print("| figure | median | runs |")
    print("|---|---|---|")
    for key in results[0]:
        values = [r[key] for r in results]
        print(
            f"| {key} | {statistics.median(values):,.2f} | "
            f"{' / '.join(f'{v:,.2f}' for v in values)} |"
        )


def _cores() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    main()
