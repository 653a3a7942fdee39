"""ClickHouse as an output: each side output into its table with a stable token; alerts
stored once per flush, without those already stored."""

from __future__ import annotations

from collections import Counter
from typing import Any

from pipeline.outputs.base import Records
from pipeline.outputs.clickhouse.output import ClickHouseOutput
from pipeline.outputs.clickhouse.request_builder import InsertRequest
from pipeline.outputs.clickhouse.tables import Tables
from pipeline.rules.alerts import Alert
from pipeline.schema.deadletter import DeadLetters, Provenance
from pipeline.stages.base import KeptBack


class Service:
    def __init__(self, stored_ids: list[str] | None = None) -> None:
        self.requests: list[InsertRequest] = []
        self.queries: list[dict[str, Any]] = []
        self.stored_ids = stored_ids or []

    def insert(self, request: InsertRequest) -> None:
        self.requests.append(request)

    def query_column(self, sql: str, parameters: dict[str, Any]) -> list[Any]:
        self.queries.append(parameters)
        return [i for i in self.stored_ids if i in parameters["ids"]]


def alert(n: int) -> Alert:
    return Alert(
        alert_id=f"a{n}", rule_id="r", title="t", severity="high", tags=[], tenant="acme",
        sandbox_id="sb", first_ts=1, last_ts=2, count=1, evidence=[f"e{n}"],
    )  # fmt: skip


def dead(offset: int) -> dict[str, Any]:
    letters = DeadLetters()
    letters.message(Provenance("audit.events", 0, offset, None), "not_avro", "x", b"")
    return letters.records[0]


def test_alerts_wait_for_the_flush_and_those_stored_already_are_skipped() -> None:
    service = Service(stored_ids=["a1"])
    output = ClickHouseOutput(service, Tables("audit"))
    output.write(Records("alerts", [alert(1), alert(2)]))
    output.write(Records("alerts", [alert(3)]))
    assert service.requests == []

    output.flush()

    assert service.queries == [{"ids": ["a1", "a2", "a3"]}]
    [request] = service.requests
    assert request.table == "audit.alerts" and request.rows == 2
    assert request.columns[0] == ["a2", "a3"]
    output.flush()  # nothing kept: nothing asked
    assert len(service.queries) == 1


def test_other_kinds_are_inserted_when_written_with_tokens_of_their_identity() -> None:
    service = Service()
    output = ClickHouseOutput(service, Tables("audit"))
    key = KeptBack(1_795_860_000, "acme", "sb", "prod", "file", "debug")
    output.write(Records("dead_letters", [dead(5), dead(6)]))
    output.write(Records("dead_letters", [dead(5), dead(6)]))  # the same re-sent
    output.write(Records("dead_letters", [dead(7)]))
    output.write(Records("rollup", list(Counter({key: 3}).items()), "0:10:64/0"))
    output.write(Records("links", [("acme", "sb", 4, 1, "h" * 64, "p" * 64)], "0:10:64/0"))

    tables = [r.table for r in service.requests]
    assert tables == ["audit.deadletter"] * 3 + ["audit.events_policy_rollup", "audit.chain_links"]
    tokens = [r.dedup_token for r in service.requests]
    assert tokens[0] == tokens[1] != tokens[2]
    assert tokens[3] == "audit.events_policy_rollup:0:10:64/0"
    assert service.requests[3].columns[-1] == [3]
