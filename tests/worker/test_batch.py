"""The worker's counters add up: in = stored + deduplicated + dropped + collapsed + dead
letters."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.config import Settings
from pipeline.outputs.base import NoDestination
from pipeline.outputs.clickhouse.request_builder import InsertRequest
from pipeline.schema import codec_for
from pipeline.sim.simulate import FleetSimulator
from pipeline.stages.decode import RawMessage
from pipeline.worker.batch import BatchProcessor
from pipeline.worker.stages import default_stages

SETTINGS = Settings()
CODEC = codec_for(SETTINGS.kafka.schema_registry_url)


class Recorder:
    retries_total = 2

    def __init__(self) -> None:
        self.requests: list[InsertRequest] = []

    def insert(self, request: InsertRequest) -> None:
        self.requests.append(request)

    def query_rows(self, sql: str, parameters: dict[str, Any]) -> list[tuple[Any, ...]]:
        return []

    def query_column(self, sql: str, parameters: dict[str, Any]) -> list[Any]:
        return []


def message(offset: int, events: list[dict[str, Any]]) -> RawMessage:
    value = CODEC.encode(
        "audit_event_batch", {"sandbox_id": "sb", "collector": "t", "sent_at": 0, "events": events}
    )
    return RawMessage(offset % 3, offset, b"sb", value)


def sample(metrics: Any, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels or None) or 0.0


def test_counters_add_up_and_metrics_are_exposed() -> None:
    service = Recorder()
    processor = BatchProcessor(SETTINGS, CODEC, default_stages(SETTINGS), service)  # type: ignore[arg-type]
    events = list(FleetSimulator(3, seed=2).events(300))
    events[10]["tenant"] = ""  # invalid_event
    events[20]["ts"] += 10**10  # ts_in_future
    events[30]["actor"]["cmdline"] = "mysql --password=hunter2"  # redacted, still stored
    poll = events[40] | {"category": "api", "action": "call", "object": "GET /status"}
    for n in range(40, 45):  # five identical polls: stored once, with repeat_count 5
        events[n] = poll | {"event_id": f"poll-{n}", "ts": poll["ts"] + n, "actor": poll["actor"]}
    messages = [message(n, events[n * 100 : (n + 1) * 100]) for n in range(3)]
    messages.append(RawMessage(1, 99, None, b"garbage"))  # not_avro, one whole message

    processor.process(messages)
    m = processor.metrics

    assert sample(m, "auditpipe_events_in_total") == 301
    assert sample(m, "auditpipe_events_stored_total") == 294
    assert sample(m, "auditpipe_events_collapsed_total") == 4
    assert sample(m, "auditpipe_deadletter_total", reason="invalid_event") == 1
    assert sample(m, "auditpipe_deadletter_total", reason="ts_in_future") == 1
    assert sample(m, "auditpipe_deadletter_total", reason="not_avro") == 1
    assert sample(m, "auditpipe_events_in_total") == (
        sample(m, "auditpipe_events_stored_total")
        + sample(m, "auditpipe_events_deduplicated_total")
        + sample(m, "auditpipe_events_collapsed_total")
        + sum(
            s.value
            for s in m.events_dropped_by_policy.collect()[0].samples
            if s.name.endswith("_total")
        )
        + sum(s.value for s in m.deadletter.collect()[0].samples if s.name.endswith("_total"))
    )
    assert sample(m, "auditpipe_redactions_total", rule="secret_flag") == 1
    assert sample(m, "auditpipe_sink_insert_retries_total") == 2
    assert sample(m, "auditpipe_batch_events_count") == 1
    assert sample(m, "auditpipe_stage_duration_seconds_count", stage="redact") >= 1
    rows = sum(r.rows for r in service.requests if r.table.endswith(".events"))
    assert rows == 294
    text = m.exposition(lambda: {0: 5}).decode()
    for name in (
        "auditpipe_events_in_total",
        "auditpipe_events_stored_total",
        "auditpipe_events_deduplicated_total",
        'auditpipe_deadletter_total{reason="not_avro"}',
        "auditpipe_batch_events_bucket",
        "auditpipe_stage_duration_seconds_bucket",
        'auditpipe_consumer_lag{partition="0"} 5.0',
    ):
        assert name in text, name
    assert processor.next_offsets == {0: 1, 1: 100, 2: 3}
    # Prometheus naming: every metric carries the project's prefix.
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    assert len(names) > 20
    assert all(name.startswith("auditpipe_") for name in names), names


def test_messages_stored_before_a_restart_are_skipped() -> None:
    service = Recorder()
    processor = BatchProcessor(SETTINGS, CODEC, default_stages(SETTINGS), service)  # type: ignore[arg-type]
    events = list(FleetSimulator(3, seed=4).events(200))
    messages = [message(n, events[n * 50 : (n + 1) * 50]) for n in range(4)]  # partitions 0,1,2,0
    processor.stored_upto = {0: 0, 1: -1}  # offset 0 of partition 0 was stored already

    processor.process(messages)

    assert sample(processor.metrics, "auditpipe_messages_already_stored_total") == 1
    stored = [r for r in service.requests if r.table.endswith(".events")]
    assert sum(r.rows for r in stored) == 150
    assert processor.next_offsets == {0: 4, 1: 2, 2: 3}  # skipped messages count as done


def test_kept_back_counts_and_links_are_written_before_rows_after_them(tmp_path: Any) -> None:
    """A crash after the sink stored rows replays only later messages: the counts and
    chain links of events the policy kept back before those rows must be stored first,
    or they would be lost (and verify would report the links' events as deleted)."""
    policy = tmp_path / "policy.yaml"
    policy.write_text("default: warning\n")
    settings = Settings(policy={"file": policy}, sink={"max_rows": 40})
    service = Recorder()
    processor = BatchProcessor(settings, CODEC, default_stages(settings), service)  # type: ignore[arg-type]
    events = list(FleetSimulator(3, seed=5).events(1000))
    messages = [message(n, events[n * 5 : (n + 1) * 5]) for n in range(200)]  # 4 chunks

    processor.process(messages)

    tables = [r.table.rsplit(".", 1)[1] for r in service.requests]
    assert tables.count("events") > 2  # the sink inserted in the middle of the batch
    first_rows = tables.index("events")
    assert "events_policy_rollup" in tables[:first_rows]
    kept = sum(
        sum(r.columns[-1]) for r in service.requests if r.table.endswith("events_policy_rollup")
    )
    dropped = processor.metrics.events_dropped_by_policy.collect()[0].samples
    assert kept == sum(s.value for s in dropped if s.name.endswith("_total")) > 0
    tokens = [r.dedup_token for r in service.requests if r.table.endswith("events_policy_rollup")]
    assert len(tokens) == len(set(tokens)) > 1


class DeferredTopic:
    """The deferred topic as an output (``outputs/kafka`` publishes it): keeps the
    messages in the order written, on a log shared with the inserts."""

    name = "topics"
    kinds = frozenset({"deferred", "alerts", "dead_letters"})

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.messages: list[RawMessage] = []
        self.alerts: list[Any] = []

    def write(self, records: Any) -> None:
        if records.kind == "deferred":
            self.messages.extend(records.items)
            self.log.extend(f"deferred {m.offset}" for m in records.items)
        elif records.kind == "alerts":
            self.alerts.extend(records.items)

    def flush(self) -> None:
        pass


class LoggedInserts(Recorder):
    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log

    def insert(self, request: InsertRequest) -> None:
        super().insert(request)
        if request.table.endswith(".events"):
            offsets = request.columns[request.column_names.index("kafka_offset")]
            self.log.append(f"insert {min(offsets)}-{max(offsets)}")


def test_a_flood_is_deferred_then_stored_whole_in_order_from_the_deferred_topic() -> None:
    """One sandbox floods among quiet ones: its messages over the limit go to the deferred
    topic before any row after them is stored; the quiet ones are stored at once; the
    deferred path stores the rest (marked, with tokens of its own), in the sandbox's
    order (no chain-gap alert), and every event is counted in exactly once."""
    settings = Settings(
        fairness={"sandbox_events_per_s": 100, "sandbox_burst": 500}, sink={"max_rows": 300}
    )
    log: list[str] = []
    service = LoggedInserts(log)
    processor = BatchProcessor(settings, CODEC, default_stages(settings), service)  # type: ignore[arg-type]
    topic = DeferredTopic(log)
    processor.outputs.add(topic)
    deferred_path = processor.deferred_path()
    quiet = list(FleetSimulator(3, seed=6).events(300))
    template = quiet[0]
    flood = [
        template | {"sandbox_id": "flood", "seq": n + 1, "event_id": f"flood-{n}"}
        for n in range(2000)
    ]
    messages = []
    for n in range(10):  # flood, quiet, flood, quiet, ...
        for events, key in (
            (flood[n * 200 : (n + 1) * 200], b"t/flood"),
            (quiet[n * 30 : (n + 1) * 30], b"q"),
        ):
            value = CODEC.encode(
                "audit_event_batch",
                {"sandbox_id": "x", "collector": "t", "sent_at": 0, "events": events},
            )
            messages.append(RawMessage(0, len(messages), key, value, 1_700_000_000_000))

    processor.process(messages)

    assert [m.offset for m in topic.messages] == [4, 6, 8, 10, 12, 14, 16, 18]
    first_deferral = log.index("deferred 4")
    assert all(
        int(e.split()[1].split("-")[1]) < 4 for e in log[:first_deferral] if e.startswith("insert")
    )
    main_rows = sum(r.rows for r in service.requests if r.table.endswith(".events"))
    assert main_rows == 400 + 300  # two flood messages, every quiet one
    assert [a.rule_id for a in topic.alerts].count("AP-FLOOD") == 1
    assert processor.stages.fair is not None and processor.stages.fair.pending[b"t/flood"] == 8

    # The deferred topic: the same messages at its own offsets (same partition).
    service.requests.clear()
    taken = [RawMessage(0, n, m.key, m.value, m.timestamp_ms) for n, m in enumerate(topic.messages)]
    deferred_path.process(taken)

    stored = [r for r in service.requests if r.table.endswith(".events")]
    assert sum(r.rows for r in stored) == 1600
    assert all(r.column_names[-1] == "deferred" and all(r.columns[-1]) for r in stored)
    assert all(r.dedup_token.startswith("deferred:") for r in stored)
    seqs = [s for r in stored for s in r.columns[r.column_names.index("seq")]]
    assert seqs == list(range(401, 2001))
    assert not [a for a in topic.alerts if a.rule_id.startswith("AP-INT")]
    assert processor.stages.fair.pending == {}
    m = processor.metrics
    assert (
        sample(m, "auditpipe_events_in_total") == 2300 == sample(m, "auditpipe_events_stored_total")
    )
    assert sample(m, "auditpipe_events_deferred_total", reason="sandbox_rate") == 200


def test_a_deferral_with_no_deferred_topic_fails_the_batch_instead_of_losing_it() -> None:
    settings = Settings(fairness={"sandbox_events_per_s": 1, "sandbox_burst": 10})
    processor = BatchProcessor(settings, CODEC, default_stages(settings), Recorder())  # type: ignore[arg-type]
    events = list(FleetSimulator(1, seed=7).events(50))
    with pytest.raises(NoDestination):
        processor.process([message(0, events)])
