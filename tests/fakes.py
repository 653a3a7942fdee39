"""Test doubles shared by the unit tests (never imported by the package)."""

from __future__ import annotations

from typing import Any

from pipeline.outputs.clickhouse.request_builder import InsertRequest


class RecordingService:
    """An Inserter that keeps the requests (for unit tests)."""

    def __init__(self) -> None:
        self.requests: list[InsertRequest] = []

    def insert(self, request: InsertRequest) -> None:
        self.requests.append(request)


def event_at(partition: int, offset: int) -> dict[str, Any]:
    return {
        "event_id": f"e{offset}",
        "ts": 0,
        "tenant": "t",
        "sandbox_id": "s",
        "seq": offset,
        "category": "process",
        "action": "exec",
        "level": "info",
        "outcome": "success",
        "actor": {"user": "", "uid": None, "pid": None, "ppid": None, "process": "", "cmdline": ""},
        "object": "",
        "bytes": None,
        "attributes": {},
        "prev_hash": None,
        "hash": None,
        "kafka_partition": partition,
        "kafka_offset": offset,
    }


def actor(**fields: Any) -> dict[str, Any]:
    """An actor as the schema (v2) holds it when nothing is known, with ``fields`` set."""
    empty = {"user": "", "uid": None, "pid": None, "ppid": None, "process": "", "cmdline": ""}
    return {**empty, "parent_process": "", "parent_cmdline": "", **fields}
