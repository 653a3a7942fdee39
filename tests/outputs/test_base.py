"""The output contract's fan-out: each kind to the destinations that take it, in order."""

from __future__ import annotations

import pytest

from pipeline.outputs.base import Kind, NoDestination, Outputs, Records


class Destination:
    def __init__(self, name: str, kinds: set[Kind], log: list[str]) -> None:
        self.name = name
        self.kinds = frozenset(kinds)
        self.log = log

    def write(self, records: Records) -> None:
        self.log.append(f"{self.name}:{records.kind}:{len(records.items)}:{records.origin}")

    def flush(self) -> None:
        self.log.append(f"{self.name}:flush")


def test_each_kind_goes_to_the_destinations_that_take_it_in_order() -> None:
    log: list[str] = []
    outputs = Outputs([Destination("store", {"dead_letters", "alerts", "links"}, log)])
    outputs.add(Destination("topics", {"dead_letters", "alerts"}, log))

    outputs.write("dead_letters", [{"n": 1}, {"n": 2}])
    outputs.write("links", [("t", "s", 1)], "0:5:10/0")
    outputs.write("alerts", [])  # nothing to write: nobody is called
    outputs.flush()

    assert log == [
        "store:dead_letters:2:",
        "topics:dead_letters:2:",
        "store:links:1:0:5:10/0",
        "store:flush",
        "topics:flush",
    ]
    assert outputs.names == ["store", "topics"]


def test_records_no_destination_takes_are_an_error_not_lost() -> None:
    """E.g. deferred messages in a worker without topics: raised, never dropped."""
    outputs = Outputs([Destination("store", {"dead_letters"}, [])])
    outputs.write("deferred", [])  # nothing to write is no error
    with pytest.raises(NoDestination, match="no output takes deferred"):
        outputs.write("deferred", ["a message"])


def test_a_destination_with_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown kinds"):
        Outputs([Destination("odd", {"events"}, [])])  # type: ignore[arg-type]


def test_a_failed_write_stops_before_the_later_destinations() -> None:
    """The store refuses: the topics never announce what was not stored."""
    log: list[str] = []

    class Failing(Destination):
        def write(self, records: Records) -> None:
            raise OSError("disk full")

    outputs = Outputs(
        [Failing("store", {"dead_letters"}, log), Destination("t", {"dead_letters"}, log)]
    )
    with pytest.raises(OSError):
        outputs.write("dead_letters", [{"n": 1}])
    assert log == []
