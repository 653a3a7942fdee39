"""The dedup stage and its window: what counts as seen, and for how long."""

from __future__ import annotations

import numpy as np

from pipeline.config import DedupConfig
from pipeline.simulate import FleetSimulator
from pipeline.stages.base import BatchContext
from pipeline.stages.dedup import DedupStage, DedupWindow, key_hash


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
    assert stage.process([dict(e) for e in events], BatchContext("t")) == []
    assert stage.dropped == 500


def test_duplicates_inside_one_batch_keep_the_first() -> None:
    stage = DedupStage(DedupConfig(), clock=lambda: 0.0)
    events = tagged(10)
    batch = [*events[:5], events[2], events[4], *events[5:]]
    kept = stage.process(batch, BatchContext("t"))
    assert kept == events
    assert stage.dropped == 2


def test_keys_leave_with_their_bucket() -> None:
    window = DedupWindow(window_s=600, buckets=10)  # 60 s buckets
    window.check(0, [7], now=0.0)
    assert window.check(0, [7], now=599.0) == [True]
    assert window.check(0, [7], now=660.0) == [False]  # t=0's bucket is gone; 7 is new again
    assert (0, 0) in window.take_gone()


def test_partitions_are_separate_and_can_be_forgotten() -> None:
    window = DedupWindow(window_s=60, buckets=2)
    window.check(0, [1, 2], now=0.0)
    assert window.check(1, [1], now=1.0) == [False]
    window.forget(0)
    assert window.check(0, [1], now=2.0) == [False]


def test_rebuilt_window_knows_the_persisted_keys() -> None:
    first = DedupWindow(window_s=600, buckets=10)
    first.check(3, [11, 12], now=100.0)
    first.check(3, [13], now=200.0)  # another bucket: the first is frozen
    added = first.take_added()
    assert added == {(3, 1): [11, 12], (3, 3): [13]}

    second = DedupWindow(window_s=600, buckets=10)
    for (partition, bucket), hashes in added.items():
        blob = np.asarray(hashes, dtype=np.uint64).tobytes()
        second.load(partition, bucket, np.frombuffer(blob, dtype=np.uint64).tolist(), now=210.0)
    assert second.check(3, [11, 12, 13, 14], now=210.0) == [True, True, True, False]


def test_key_fields_replace_event_id() -> None:
    events = tagged(2)
    events[1]["event_id"] = "other"
    events[1].update({k: events[0][k] for k in ("sandbox_id", "seq")})
    assert key_hash(events[0], []) != key_hash(events[1], [])
    assert key_hash(events[0], ["sandbox_id", "seq"]) == key_hash(events[1], ["sandbox_id", "seq"])
    stage = DedupStage(DedupConfig(key_fields=["sandbox_id", "seq"]), clock=lambda: 0.0)
    assert stage.process(events, BatchContext("t")) == events[:1]


def test_hashes_are_stable_across_processes() -> None:
    # xxh3_64 of the UTF-8 event_id: never Python's hash(), which is salted per process.
    assert key_hash({"event_id": "abc"}, []) == 0x78AF5F94892F3950


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
