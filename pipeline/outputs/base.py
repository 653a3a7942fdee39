"""The output contract: every destination the worker's side outputs go to.

A batch leaves, besides its events (``clickhouse/sink.py``, which owns the offsets),
records of six kinds: dead letters, alerts, the policy's counts of what it kept back
(``rollup``), the chain links of kept-back events (``links``), signed checkpoints and the
messages the fairness stage deferred (``deferred``, to be stored later).
Each destination is one folder under ``outputs/`` with one ``Output``: it names the
kinds it takes and writes them. The worker writes every kind to ``Outputs``, which hands
it to each destination that takes it, in the order they were added (the store first,
then the topics: a dead letter is stored before it is announced). Nothing in the worker
knows a table, a topic or a column.

The contract, which every destination keeps:

- ``write`` returns once the records are durable at the destination, or raises; it may
  instead keep a kind until ``flush`` only where the records are made again, with the
  same identities, when the batch is replayed after a crash (alerts: their ids are
  derived from their evidence). Dead letters, counts, links and checkpoints are not made
  again for messages whose rows are already stored, so they are never kept back.
- A failure that may pass is retried inside ``write`` (back-off, the worker waits:
  backpressure); one that cannot pass raises. Nothing is dropped silently: a kind that
  no destination takes is an error when records of it are written.
- ``origin`` names where the records came from (the batch's first message and size, a
  write number): a destination that deduplicates re-sent writes derives its token from it
  and from the records, so the same records re-sent are stored once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

Kind = Literal["dead_letters", "alerts", "rollup", "links", "checkpoints", "deferred", "forwarded"]
KINDS: tuple[Kind, ...] = (
    "dead_letters",
    "alerts",
    "rollup",
    "links",
    "checkpoints",
    "deferred",
    "forwarded",
)
"""dead_letters: ``schema.deadletter`` records (dicts); alerts: ``rules.alerts.Alert``;
rollup: ``(stages.base.KeptBack, count)`` pairs; links: ``stages.base.ChainLink``;
checkpoints: ``chain.checkpoints.Checkpoint``; deferred: ``stages.decode.RawMessage``
(the message as it arrived); forwarded: ``outputs.forwarding.shapes.Item`` (what
``auditpipe forward`` sends to a SIEM destination)."""


class NoDestination(Exception):
    """Records of a kind that no destination takes (they would be lost)."""


@dataclass(frozen=True)
class Records:
    kind: Kind
    items: Sequence[Any]
    origin: str = ""


class Output(Protocol):
    """One destination. ``name`` is for logs and metrics; ``kinds`` what it takes."""

    name: str
    kinds: frozenset[Kind]

    def write(self, records: Records) -> None:
        """Durable on return (or kept until ``flush``, see the module docstring)."""

    def flush(self) -> None:
        """Everything written is durable on return."""


class Outputs:
    """The destinations of a worker, written in the order they were added."""

    def __init__(self, outputs: Sequence[Output] = ()) -> None:
        self._outputs: list[Output] = []
        self._by_kind: dict[Kind, list[Output]] = {kind: [] for kind in KINDS}
        for output in outputs:
            self.add(output)

    def add(self, output: Output) -> None:
        unknown = set(output.kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"output {output.name}: unknown kinds {sorted(unknown)}")
        self._outputs.append(output)
        for kind in output.kinds:
            self._by_kind[kind].append(output)

    @property
    def names(self) -> list[str]:
        return [output.name for output in self._outputs]

    def write(self, kind: Kind, items: Sequence[Any], origin: str = "") -> None:
        if not items:
            return
        records = Records(kind, items, origin)
        destinations = self._by_kind[kind]
        if not destinations:
            raise NoDestination(f"no output takes {kind} (outputs: {', '.join(self.names)})")
        for output in destinations:
            output.write(records)

    def flush(self) -> None:
        for output in self._outputs:
            output.flush()
