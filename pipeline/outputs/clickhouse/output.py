"""ClickHouse as an ``Output`` (``outputs/base.py``): the batch's side outputs, each kind
into its table through the insert service (retried; refused data raises).

Alerts are kept until ``flush`` and stored once per batch: one query for the ids already
stored (a replayed batch makes the same alert ids) and one insert, instead of one of each
for every chunk that raised an alert. Every other kind is inserted when written.
"""

from __future__ import annotations

from typing import Any, Protocol

from pipeline.outputs.base import Kind, Records
from pipeline.outputs.clickhouse.request_builder import InsertRequest, side_request
from pipeline.outputs.clickhouse.tables import Tables
from pipeline.rules.alerts import Alert


class Service(Protocol):
    def insert(self, request: InsertRequest) -> None: ...

    def query_column(self, sql: str, parameters: dict[str, Any]) -> list[Any]: ...


class ClickHouseOutput:
    name = "clickhouse"
    kinds: frozenset[Kind] = frozenset({"dead_letters", "alerts", "rollup", "links", "checkpoints"})

    def __init__(self, service: Service, tables: Tables) -> None:
        self.service = service
        self.tables = tables
        self._alerts: list[Alert] = []

    def write(self, records: Records) -> None:
        if records.kind == "alerts":
            self._alerts.extend(records.items)
            return
        self.service.insert(side_request(self.tables, records))

    def flush(self) -> None:
        alerts, self._alerts = self._alerts, []
        if not alerts:
            return
        stored = {
            str(i)
            for i in self.service.query_column(
                f"SELECT alert_id FROM {self.tables.alerts} WHERE alert_id IN %(ids)s",
                {"ids": [a.alert_id for a in alerts]},
            )
        }
        new = [a for a in alerts if a.alert_id not in stored]
        if new:
            self.service.insert(side_request(self.tables, Records("alerts", new)))
