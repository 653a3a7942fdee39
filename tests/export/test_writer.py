from __future__ import annotations

from pathlib import Path

import orjson

from pipeline.export.writer import PartitionedWriter, event_day

DAY_MS = 86_400_000
T0 = 1_795_824_000_000  # 2026-11-28T00:00:00Z


def test_files_are_split_by_partition_day_and_size(tmp_path: Path) -> None:
    writer = PartitionedWriter(tmp_path, rows_per_file=2)
    for i in range(5):
        writer.add("process_activity", T0 + i, {"i": i, "x": {"y": str(i)} if i % 2 else {}})
    writer.add("process_activity", T0 + DAY_MS, {"i": 9})
    writer.add("detection_finding", T0, {"i": 10})
    writer.close()
    names = sorted(str(p.relative_to(tmp_path)) for p in writer.files)
    assert names == [
        "detection_finding/eventDay=20261128/part-00000.jsonl",
        "process_activity/eventDay=20261128/part-00000.jsonl",
        "process_activity/eventDay=20261128/part-00001.jsonl",
        "process_activity/eventDay=20261128/part-00002.jsonl",
        "process_activity/eventDay=20261129/part-00000.jsonl",
    ]
    rows = [orjson.loads(line) for p in writer.files for line in p.read_bytes().splitlines()]
    assert sorted(r["i"] for r in rows) == [0, 1, 2, 3, 4, 9, 10] and writer.rows == 7
    assert {"i": 1, "x": {"y": "1"}} in rows and {"i": 0, "x": {}} in rows
    assert not list(tmp_path.rglob(".*"))  # no temporary file left


def test_json_lines_keep_each_record_whole(tmp_path: Path) -> None:
    writer = PartitionedWriter(tmp_path)
    writer.add("ecs_events", T0, {"message": "a\nb", "event": {}})
    writer.close()
    (path,) = writer.files
    assert [orjson.loads(line) for line in path.read_bytes().splitlines()] == [
        {"message": "a\nb", "event": {}}
    ]
    assert event_day(T0 - 1) == "20261127"
