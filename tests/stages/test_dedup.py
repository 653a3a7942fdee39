"""The dedup stage and its window: what counts as seen, and for how long."""

from __future__ import annotations

import numpy as np

from pipeline.config import DedupConfig
from pipeline.sim.simulate import FleetSimulator
from pipeline.stages.base import BatchContext
from pipeline.stages.dedup import CONFLICT, DUPLICATE, NEW, DedupStage, DedupWindow, key_hash
from pipeline.worker.state import _pairs


def tagged(n: int, partition: int = 0, seed: int = 1) -> list[dict[str, object]]:
    events = list(FleetSimulator(3, seed=seed).events(n))
    for offset, event in enumerate(events):
        event.update(kafka_partition=partition, kafka_offset=offset)
    return events


def test_a_replayed_batch_is_dropped_whole() -> None:
    now = [1000.0]
    stage = DedupStage(DedupConfig(), clock=lambda: now[0])
    events = tagged(500)
    assert stage.process(events, BatchContext("t")) == events
    now[0] += 300  # five minutes later, other buckets
    ctx = BatchContext("t")
    assert stage.process([dict(e) for e in events], ctx) == []
    assert ctx.counted("events_deduplicated") == 500


def test_duplicates_inside_one_batch_keep_the_first() -> None:
    stage = DedupStage(DedupConfig(), clock=lambda: 0.0)
    events = tagged(10)
    batch = [*events[:5], events[2], events[4], *events[5:]]
    ctx = BatchContext("t")
    kept = stage.process(batch, ctx)
    assert kept == events
    assert ctx.counted("events_deduplicated") == 2


def test_keys_leave_with_their_bucket() -> None:
    window = DedupWindow(window_s=600, buckets=10)  # 60 s buckets
    window.check(0, [7], [70], now=0.0)
    assert window.check(0, [7], [70], now=599.0) == [DUPLICATE]
    assert window.check(0, [7], [70], now=660.0) == [NEW]  # t=0's bucket is gone; 7 is new
    assert (0, 0) in window.take_gone()


def test_partitions_are_separate_and_can_be_forgotten() -> None:
    window = DedupWindow(window_s=60, buckets=2)
    window.check(0, [1, 2], [10, 20], now=0.0)
    assert window.check(1, [1], [10], now=1.0) == [NEW]
    window.forget(0)
    assert window.check(0, [1], [10], now=2.0) == [NEW]


def test_rebuilt_window_knows_the_persisted_keys() -> None:
    first = DedupWindow(window_s=600, buckets=10)
    first.check(3, [11, 12], [110, 120], now=100.0)
    first.check(3, [13], [130], now=200.0)  # another bucket: the first is frozen
    added = first.take_added()
    assert added == {(3, 1): [(11, 110), (12, 120)], (3, 3): [(13, 130)]}

    second = DedupWindow(window_s=600, buckets=10)
    for (partition, bucket), pairs in added.items():
        blob = np.asarray(pairs, dtype=np.uint64).tobytes()
        second.load(partition, bucket, _pairs(blob, with_contents=True), now=210.0)
    assert second.check(3, [11, 12, 13, 14], [110, 999, 130, 140], now=210.0) == [
        DUPLICATE,
        CONFLICT,  # 12 came with other content
        DUPLICATE,
        NEW,
    ]


def test_records_persisted_without_contents_still_count_as_seen() -> None:
    window = DedupWindow(window_s=600, buckets=10)
    old_record = np.asarray([11, 12], dtype=np.uint64).tobytes()  # keys alone (before digests)
    window.load(0, 1, _pairs(old_record, with_contents=False), now=150.0)
    assert window.check(0, [11, 12, 13], [1, 2, 3], now=150.0) == [DUPLICATE, DUPLICATE, NEW]


def test_key_fields_replace_event_id() -> None:
    events = tagged(3)
    events[1]["event_id"] = "other"
    events[1].update({k: events[0][k] for k in ("tenant", "sandbox_id", "seq")})
    events[2] = {**events[0], "kafka_offset": 2}  # the same event again
    assert key_hash(events[0], []) != key_hash(events[1], [])
    assert key_hash(events[0], ["seq"]) == key_hash(events[1], ["seq"])
    stage = DedupStage(DedupConfig(key_fields=["seq"]), clock=lambda: 0.0)
    ctx = BatchContext("t")
    # events[1] takes events[0]'s key with other content: a conflict, not a duplicate.
    assert stage.process(events, ctx) == events[:1]
    assert ctx.dead.by_reason == {"conflicting_duplicate": 1}
    assert ctx.counted("events_deduplicated") == 1


def test_hashes_are_stable_across_processes() -> None:
    # xxh3_64 of tenant, sandbox and event_id: never Python's hash() (salted per process).
    event = {"tenant": "acme", "sandbox_id": "sb-1", "event_id": "abc"}
    assert key_hash(event, []) == 0x630F9637842B1239


def test_disabled_stage_keeps_everything() -> None:
    events = tagged(5)
    stage = DedupStage(DedupConfig(enabled=False))
    assert stage.process(events + events, BatchContext("t")) == events + events


def test_a_chunk_of_several_partitions_uses_each_partitions_window() -> None:
    stage = DedupStage(DedupConfig(), clock=lambda: 0.0)
    on_0, on_1 = tagged(4, partition=0, seed=1), tagged(4, partition=1, seed=2)
    assert stage.process([*on_0, *on_1], BatchContext("t")) == [*on_0, *on_1]
    # A replay of partition 1's events next to new ones of partition 0: only the replay goes.
    fresh = tagged(3, partition=0, seed=3)
    assert stage.process([*fresh, *(dict(e) for e in on_1)], BatchContext("t")) == fresh
    assert stage.window.partitions.keys() == {0, 1}


def test_two_tenants_with_the_same_ids_and_sandbox_names_are_both_kept() -> None:
    """Tenant B sends the ids (and sandbox names) of tenant A's stored events: B's events
    are B's, not duplicates of A's (today's attack: 15 of B's rows were lost)."""
    stage = DedupStage(DedupConfig(), clock=lambda: 0.0)
    a_events = tagged(100)
    for event in a_events:
        event["tenant"] = "tenant-a"
    assert stage.process(a_events, BatchContext("t")) == a_events
    b_events = [
        {**e, "tenant": "tenant-b", "kafka_offset": 1000 + i} for i, e in enumerate(a_events)
    ]
    ctx = BatchContext("t")
    assert stage.process(b_events, ctx) == b_events
    assert not ctx.dead and not ctx.alerts and not ctx.counts


def test_a_replay_with_other_content_is_dead_lettered_and_alerted_not_dropped() -> None:
    stage = DedupStage(DedupConfig(), clock=lambda: 0.0)
    events = tagged(5)
    stage.process(events, BatchContext("t"))
    changed = {**events[2], "actor": {**events[2]["actor"], "cmdline": "rm -rf /evidence"}}
    exact = dict(events[3])
    ctx = BatchContext("t")

    assert stage.process([changed, exact], ctx) == []

    assert ctx.counted("events_deduplicated") == 1  # the exact replay: a duplicate, counted
    (record,) = ctx.dead.records
    assert record["reason"] == "conflicting_duplicate"
    assert record["event_id"] == events[2]["event_id"]
    assert b"rm -rf /evidence" in record["original"]  # the evidence is kept
    (alert,) = ctx.alerts
    assert (alert.rule_id, alert.severity, alert.tenant) == (
        "AP-INT-REPLAY",
        "critical",
        events[2]["tenant"],
    )
    assert alert.evidence == (events[2]["event_id"],)


def test_a_changed_chain_hash_alone_is_a_conflict() -> None:
    stage = DedupStage(DedupConfig(), clock=lambda: 0.0)
    events = tagged(2)
    events[0]["hash"] = b"a" * 32
    stage.process(events, BatchContext("t"))
    ctx = BatchContext("t")
    assert stage.process([{**events[0], "hash": b"b" * 32}], ctx) == []
    assert ctx.dead.by_reason == {"conflicting_duplicate": 1}


def test_content_digests_are_keyed_by_the_workers_secret() -> None:
    from pipeline.stages.dedup import content_digest

    event = tagged(1)[0]
    mine = DedupStage(DedupConfig(), secret=b"worker key")
    again = DedupStage(DedupConfig(), secret=b"worker key")
    other = DedupStage(DedupConfig(), secret=b"another key")
    assert mine.seed == again.seed != other.seed  # stable across restarts, secret
    assert content_digest(event, mine.seed) != content_digest(event, other.seed)
