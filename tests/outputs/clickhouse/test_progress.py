"""The sink's stored offsets: only signed rows below a partition's end are trusted."""

from __future__ import annotations

from typing import Any

from pipeline.outputs.clickhouse.progress import ProgressSigner, stored_offsets
from pipeline.outputs.clickhouse.request_builder import EVENT_COLUMNS, build_event_request
from tests.fakes import event_at

SIGNER = ProgressSigner(b"k" * 32, "audit.events")


class Rows:
    def __init__(self, rows: list[tuple[int, int, bytes]]) -> None:
        self.rows = rows

    def query_rows(self, sql: str, parameters: dict[str, Any]) -> list[tuple[Any, ...]]:
        wanted = set(parameters["partitions"])
        rows = [r for r in self.rows if r[0] in wanted]
        return sorted(rows, key=lambda r: (r[0], -r[1]))


def test_the_highest_signed_offset_below_the_end_is_trusted() -> None:
    rows = Rows([(0, 10, SIGNER.mac(0, 10)), (0, 25, SIGNER.mac(0, 25)), (1, 7, SIGNER.mac(1, 7))])
    found = stored_offsets(rows, "audit", {0, 1, 2}, {0: 100, 1: 100, 2: 100}, SIGNER)
    assert found.upto == {0: 25, 1: 7, 2: -1}
    assert found.rejected == 0


def test_forged_rows_are_ignored_and_counted() -> None:
    """An events row inserted by ingest with kafka_offset near 2^64, or any offset with a
    MAC made without the key, makes nothing look stored."""
    forged = [
        (0, 2**64 - 2, SIGNER.mac(0, 2**64 - 2)),  # validly signed, but beyond the end
        (0, 90, bytes(16)),  # below the end, MAC of zeros (an unsigned insert)
        (0, 80, ProgressSigner(b"other key" * 4, "audit.events").mac(0, 80)),
        (0, 40, SIGNER.mac(0, 40)),  # the real progress
        (1, 99, bytes(16)),
    ]
    found = stored_offsets(Rows(forged), "audit", {0, 1}, {0: 100, 1: 100}, SIGNER)
    assert found.upto == {0: 40, 1: -1}
    assert found.rejected == 4


def test_the_mac_names_topic_partition_and_offset() -> None:
    other_topic = ProgressSigner(b"k" * 32, "other.events")
    assert SIGNER.mac(0, 5) != other_topic.mac(0, 5)
    assert SIGNER.mac(0, 5) != SIGNER.mac(1, 5)


def test_every_row_of_a_block_carries_its_messages_mac() -> None:
    events = [event_at(0, 5), event_at(0, 5), event_at(1, 9)]
    request = build_event_request("audit.events", events, SIGNER)
    macs = request.columns[EVENT_COLUMNS.index("sink_mac")]
    assert macs == [SIGNER.mac(0, 5), SIGNER.mac(0, 5), SIGNER.mac(1, 9)]
    unsigned = build_event_request("audit.events", events)
    assert unsigned.columns[EVENT_COLUMNS.index("sink_mac")] == [bytes(16)] * 3
