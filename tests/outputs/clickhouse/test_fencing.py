"""The fenced insert path's order (no server needed): the fence is asked once the first
block is encoded and before a byte is sent; an encoding error is raised as itself, with
no fence asked and nothing sent. The query ids name the worker and what it holds."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from pipeline.outputs.clickhouse import InsertService
from pipeline.outputs.clickhouse.fencing import (
    MAX_QUERY_SIZE,
    cancel_inserts_of_others,
    holder,
    send_insert,
)
from pipeline.outputs.clickhouse.request_builder import InsertRequest, build_event_request
from pipeline.worker.fence import FenceUnsure
from tests.fakes import event_at


class OrderedClient:
    """Records when blocks are encoded, the fence asked and chunks sent."""

    write_compression = None

    def __init__(self, fail_encoding: bool = False) -> None:
        self.log: list[str] = []
        self.settings: dict[str, Any] = {}
        self.fail_encoding = fail_encoding
        self._transform = self

    def create_insert_context(self, *args: Any, **kwargs: Any) -> Any:
        return SimpleNamespace(insert_exception=None, compression=None)

    def build_insert(self, context: Any) -> Iterator[bytes]:
        for n in range(2):
            if self.fail_encoding:
                context.insert_exception = OverflowError("int too big to convert")
                yield b"INTERNAL EXCEPTION WHILE SERIALIZING"
                return
            self.log.append(f"encoded {n}")
            yield b"block"

    def raw_insert(
        self, table: str, insert_block: Iterator[bytes], settings: dict[str, Any], **_: Any
    ) -> None:
        assert table == ""  # the statement is in the body
        self.settings = settings
        for _chunk in insert_block:
            self.log.append("sent")


REQUEST = InsertRequest("audit.events", ["a"], [[1]], 1, "token", "events:0")


def test_the_fence_is_asked_after_the_first_block_is_encoded_and_before_sending() -> None:
    client = OrderedClient()
    send_insert(client, REQUEST, {"query_id": "q"}, lambda: client.log.append("fence"))  # type: ignore[arg-type]
    assert client.log == ["encoded 0", "fence", "sent", "encoded 1", "sent"]
    # The store registers the query (so a new owner can cancel it) after 16 KiB.
    assert client.settings == {"query_id": "q", "max_query_size": MAX_QUERY_SIZE}


def test_an_insert_the_fence_holds_back_is_retried_not_lost() -> None:
    client = OrderedClient()
    unsure = [FenceUnsure("the coordinator did not answer")] * 2

    def fence() -> None:
        if unsure:
            raise unsure.pop()
        client.log.append("fence")

    service = InsertService(lambda: client, retry_initial_s=0.001, fence=fence)  # type: ignore[arg-type,return-value]
    service.insert(REQUEST)
    assert service.retries_total == 2
    # Held back twice before a byte went out, then sent once, whole.
    assert client.log == ["encoded 0"] * 3 + ["fence", "sent", "encoded 1", "sent"]


def test_an_encoding_error_is_raised_as_itself_without_asking_or_sending() -> None:
    client = OrderedClient(fail_encoding=True)
    with pytest.raises(OverflowError):
        send_insert(client, REQUEST, {}, lambda: client.log.append("fence"))  # type: ignore[arg-type]
    assert client.log == []


def test_each_insert_attempt_names_the_worker_and_the_partitions_it_holds() -> None:
    client = OrderedClient()
    service = InsertService(lambda: client, fence=lambda: None, worker_id="w7")  # type: ignore[arg-type,return-value]
    request = build_event_request("audit.events", [event_at(3, 9), event_at(0, 4), event_at(3, 10)])
    service.insert(request)
    first = client.settings["query_id"]
    service.insert(request)
    assert holder(first) == ("w7", "events", frozenset({0, 3}))
    assert client.settings["query_id"] != first  # a new id for each attempt


@pytest.mark.parametrize(
    "qid",
    [
        "auditpipe-insert-w1-events:x-00",  # not partition numbers
        "auditpipe-insert-w1-events-00",  # no source:partitions
        "auditpipe-insert-w1-a-b-events:1-00",  # too many parts
        "auditpipe-query-w1-events:1-00",  # not an insert of ours
    ],
)
def test_query_ids_not_ours_name_no_holder(qid: str) -> None:
    assert holder(qid) is None


class Refusing:
    """A ClickHouse user without the grant on system.processes."""

    def query_rows_once(self, sql: str, parameters: dict[str, Any]) -> list[tuple[Any, ...]]:
        raise RuntimeError("Code: 497. ingest: Not enough privileges (ACCESS_DENIED)")


def test_cancelling_is_best_effort_never_a_hold_up(caplog: pytest.LogCaptureFixture) -> None:
    assert cancel_inserts_of_others(Refusing(), "me", "events", {1}) == 0
    assert "store-side fence is off for partitions [1] of events" in caplog.text
