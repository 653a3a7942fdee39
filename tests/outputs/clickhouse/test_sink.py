"""The ClickHouse sink's batching and its retry policy (no server needed)."""

from __future__ import annotations

import threading

import pytest

from pipeline.outputs.clickhouse import InsertService, SinkStopped
from pipeline.outputs.clickhouse.request_builder import build_event_request
from pipeline.outputs.clickhouse.sink import ClickHouseSink
from tests.fakes import RecordingService
from tests.fakes import event_at as _ev


def test_one_insert_per_checkpoint_naming_every_partitions_offsets() -> None:
    service = RecordingService()
    sink = ClickHouseSink(service, table="audit.events", max_rows=100, max_bytes=1 << 30)
    sink.add(1, [_ev(1, 7)], size_bytes=10)
    sink.add(0, [_ev(0, 1), _ev(0, 2)], size_bytes=10)
    sink.add(0, [_ev(0, 3)], size_bytes=10)
    assert service.requests == []

    assert sink.flush() == 4

    (request,) = service.requests
    assert request.dedup_token == "events:0@1-3,1@7-7:4"
    columns = dict(zip(request.column_names, request.columns, strict=True))
    assert columns["kafka_offset"] == [1, 2, 3, 7]  # by partition, then offset
    assert sink.pending_rows() == 0
    assert sink.flush() == 0
    assert len(service.requests) == 1


def test_row_bound_inserts_at_once_in_chunks() -> None:
    service = RecordingService()
    sink = ClickHouseSink(service, table="audit.events", max_rows=2, max_bytes=1 << 30)
    sink.add(0, [_ev(0, i) for i in range(5)], size_bytes=10)
    assert [r.rows for r in service.requests] == [2, 2, 1]
    assert [r.dedup_token for r in service.requests] == [
        "events:0@0-1:2",
        "events:0@2-3:2",
        "events:0@4-4:1",
    ]


def test_a_message_is_never_split_between_blocks() -> None:
    service = RecordingService()
    sink = ClickHouseSink(service, table="audit.events", max_rows=2, max_bytes=1 << 30)
    one_message = [_ev(0, 7) | {"event_id": f"m{i}"} for i in range(3)]
    sink.add(0, [_ev(0, 6), *one_message, _ev(0, 8)], size_bytes=10)
    # The cut after two rows would fall inside message 7: the block takes all of it.
    assert [r.rows for r in service.requests] == [4, 1]
    assert [r.dedup_token for r in service.requests] == ["events:0@6-7:4", "events:0@8-8:1"]


def test_byte_bound_inserts_at_once() -> None:
    service = RecordingService()
    sink = ClickHouseSink(service, table="audit.events", max_rows=1000, max_bytes=100)
    sink.add(0, [_ev(0, 1)], size_bytes=60)
    assert service.requests == []
    sink.add(2, [_ev(2, 1)], size_bytes=60)
    assert [r.rows for r in service.requests] == [2]


def test_columns_follow_the_column_names() -> None:
    request = build_event_request("audit.events", [_ev(3, 41), _ev(3, 42)])
    columns = dict(zip(request.column_names, request.columns, strict=True))
    assert columns["kafka_offset"] == [41, 42]
    assert columns["event_id"] == ["e41", "e42"]
    assert columns["actor_user"] == ["", ""]


class FlakyClient:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.inserted: list[str] = []

    def insert(self, table: str, data: object, **kwargs: object) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("ClickHouse is down")
        self.inserted.append(str(kwargs["settings"]["insert_deduplication_token"]))  # type: ignore[index]


def test_failed_inserts_are_retried_until_stored() -> None:
    client = FlakyClient(failures=3)
    service = InsertService(lambda: client, retry_initial_s=0.001, retry_max_s=0.004)
    request = build_event_request("audit.events", [_ev(0, 1)])

    service.insert(request)

    assert client.inserted == ["events:0@1-1:1"]
    assert service.retries_total == 3
    assert service.rows_total == 1


def test_stopping_during_retries_raises_instead_of_dropping() -> None:
    stopping = threading.Event()
    client = FlakyClient(failures=10**9)
    service = InsertService(lambda: client, retry_initial_s=0.01, stopping=stopping)
    threading.Timer(0.1, stopping.set).start()
    with pytest.raises(SinkStopped, match=r"insert of 1 rows into audit\.events: not done"):
        service.insert(build_event_request("audit.events", [_ev(0, 1)]))
    assert client.inserted == []


class SlowService:
    """Records which thread inserted, and can fail."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.threads: list[str] = []
        self.rows: list[int] = []
        self.fail_on = fail_on

    def insert(self, request: object) -> None:
        import time

        time.sleep(0.02)
        if self.fail_on is not None and len(self.rows) == self.fail_on:
            raise SinkStopped("stopped")
        self.threads.append(threading.current_thread().name)
        self.rows.append(request.rows)  # type: ignore[attr-defined]


def test_background_inserts_are_all_done_when_flush_returns() -> None:
    from concurrent.futures import ThreadPoolExecutor

    service = SlowService()
    with ThreadPoolExecutor(1, thread_name_prefix="insert") as pool:
        sink = ClickHouseSink(service, table="t", max_rows=2, max_bytes=1 << 30, executor=pool)
        for offset in range(5):
            sink.add(0, [_ev(0, offset)], size_bytes=1)
        assert sink.flush() == 5
    assert service.rows == [2, 2, 1]
    assert all(name.startswith("insert") for name in service.threads)


def test_a_failed_background_insert_is_raised_by_flush() -> None:
    from concurrent.futures import ThreadPoolExecutor

    service = SlowService(fail_on=1)
    with ThreadPoolExecutor(1) as pool:
        sink = ClickHouseSink(service, table="t", max_rows=2, max_bytes=1 << 30, executor=pool)
        with pytest.raises(SinkStopped):
            for offset in range(6):
                sink.add(0, [_ev(0, offset)], size_bytes=1)
            sink.flush()
    assert service.rows == [2]


def test_repeat_columns_are_sent_only_for_a_block_with_repeats() -> None:
    plain = build_event_request("audit.events", [_ev(0, 1), _ev(0, 2)])
    assert "repeat_count" not in plain.column_names  # the table's defaults fill them
    folded = _ev(0, 3) | {"repeat_count": 3, "repeat_seqs": [8, 9]}
    folded |= {"repeat_hashes": [b"h" * 32] * 2, "repeat_prev_hashes": [b"p" * 32] * 2}
    request = build_event_request("audit.events", [_ev(0, 2), folded])
    columns = dict(zip(request.column_names, request.columns, strict=True))
    assert columns["repeat_count"] == [1, 3]
    assert columns["repeat_seqs"] == [[], [8, 9]]


class PoisonClient:
    """Refuses, like ClickHouse's client, any block holding a uid beyond UInt32."""

    def __init__(self) -> None:
        self.inserted: list[list[int]] = []
        self.calls = 0

    def insert(self, table: str, columns: list[list[object]], **kwargs: object) -> None:
        from clickhouse_connect.driver.exceptions import DataError

        self.calls += 1
        names = list(kwargs["column_names"])  # type: ignore[call-overload]
        uids = columns[names.index("actor_uid")]
        if any(uid is not None and uid >= 2**32 for uid in uids):  # type: ignore[operator]
            raise DataError("Unable to create native array for column actor_uid")
        self.inserted.append(columns[names.index("kafka_offset")])  # type: ignore[arg-type]


def test_a_block_refused_for_its_data_is_split_and_only_the_bad_rows_dead_lettered() -> None:
    client = PoisonClient()
    service = InsertService(lambda: client, retry_initial_s=0.001)
    rejected: list[tuple[list[int], str]] = []
    sink = ClickHouseSink(
        service,
        table="audit.events",
        max_rows=1000,
        max_bytes=1 << 30,
        on_rejected=lambda events, why: rejected.append(([e["kafka_offset"] for e in events], why)),
    )
    events = [_ev(0, offset) for offset in range(100)]
    for bad in (17, 18, 60):
        events[bad]["actor"]["uid"] = 2**32 + bad
    sink.add(0, events, size_bytes=100)

    assert sink.flush() == 100

    stored = sorted(o for block in client.inserted for o in block)
    assert stored == [o for o in range(100) if o not in (17, 18, 60)]
    assert [offsets for offsets, _ in rejected] == [[17], [18], [60]]
    assert all("DataError: Unable to create native array" in why for _, why in rejected)
    assert service.retries_total == 0  # a data error is never retried
    assert client.calls < 40  # about 2 log2(100) inserts per bad row
    # Every row is stored or rejected in offset order: dead letters before later rows.
    order = [o for block in client.inserted for o in block]
    assert order == sorted(order)


def test_without_a_rejection_handler_a_data_error_is_raised_not_retried() -> None:
    from pipeline.outputs.clickhouse.retry import RowsRejected

    client = PoisonClient()
    service = InsertService(lambda: client, retry_initial_s=0.001)
    event = _ev(0, 1)
    event["actor"]["uid"] = 2**40
    with pytest.raises(RowsRejected, match="actor_uid"):
        service.insert(build_event_request("audit.events", [event]))
    assert client.calls == 1


def test_transport_and_server_availability_errors_are_retried() -> None:
    from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

    from pipeline.outputs.clickhouse.retry import decide

    for exc in (
        OperationalError("Error HTTPConnectionPool: connection refused"),
        DatabaseError("Code: 252. DB::Exception: Too many parts", code=252),
        DatabaseError("Code: 241. Memory limit exceeded", code=241),
        DatabaseError("Code: 516. Authentication failed", code=516),
        ConnectionError("reset"),
        TimeoutError(),
    ):
        assert decide(exc) == "retry", exc
    for exc in (
        DatabaseError("Code: 53. Type mismatch", code=53),
        DatabaseError("Code: 16. No such column evil", code=16),
        OverflowError("int too big to convert"),
    ):
        assert decide(exc) == "reject", exc


def test_dedup_tokens_are_keyed_so_no_one_can_take_the_next_one_first() -> None:
    client = FlakyClient(failures=0)
    service = InsertService(lambda: client, token_key=b"worker key")
    service.insert(build_event_request("audit.events", [_ev(0, 1)]))
    (sent,) = client.inserted
    assert sent != "events:0@1-1:1" and len(sent) == 64  # not the predictable name
    assert sent == InsertService(lambda: client, token_key=b"worker key").token("events:0@1-1:1")
    assert sent != InsertService(lambda: client, token_key=b"other").token("events:0@1-1:1")
