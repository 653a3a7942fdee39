"""Writing shaped records as JSON lines files, partitioned the way security data lakes
read them (the Parquet of ``--format ocsf-parquet`` is ClickHouse's, ``lake.py``).

Layout (Amazon Security Lake's custom sources: one source per OCSF class, partitioned by
event day; no region or account level, which the upload adds):
``OUT/<class>/eventDay=YYYYMMDD/part-NNNNN.jsonl``, ``<class>`` the OCSF class name in
snake case (``process_activity``, ``detection_finding``) or, for ECS, ``ecs_events`` /
``ecs_alerts``.

Invariants: at most ``rows_per_file`` records are held per partition before they are
written; a file is written whole to a temporary name and renamed, so a reader (or an
upload) never sees half a file.
"""

from __future__ import annotations

import os
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson


def event_day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y%m%d")


class PartitionedWriter:
    def __init__(self, out: Path, rows_per_file: int = 50_000) -> None:
        self.out, self.rows_per_file = out, rows_per_file
        self._pending: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        self._parts: dict[tuple[str, str], int] = defaultdict(int)
        self.files: list[Path] = []
        self.rows = 0

    def add(self, partition: str, ms: int, record: dict[str, Any]) -> None:
        key = (partition, event_day(ms))
        pending = self._pending[key]
        pending.append(record)
        if len(pending) >= self.rows_per_file:
            self._write(key)

    def close(self) -> None:
        for key in list(self._pending):
            self._write(key)

    def _write(self, key: tuple[str, str]) -> None:
        records = self._pending.pop(key)
        if not records:
            return
        partition, day = key
        folder = self.out / partition / f"eventDay={day}"
        folder.mkdir(parents=True, exist_ok=True)
        number = self._parts[key]
        self._parts[key] += 1
        path = folder / f"part-{number:05d}.jsonl"
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
        os.replace(temporary, path)
        self.files.append(path)
        self.rows += len(records)
