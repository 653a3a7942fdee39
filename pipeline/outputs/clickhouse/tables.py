"""The tables the worker writes besides ``audit.events``, their names and columns, and
the stages' side outputs turned into their column-oriented rows."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pipeline.stages.base import ChainLink, KeptBack

ROLLUP_COLUMNS = ("minute", "tenant", "sandbox_id", "environment", "category", "level", "events")
"""audit.events_policy_rollup: the events the level policy kept back, per minute."""
LINK_COLUMNS = ("tenant", "sandbox_id", "seq", "ts", "hash", "prev_hash")
"""audit.chain_links: the hash-chain links of chained events kept back."""


@dataclass(frozen=True)
class Tables:
    """The qualified names of the pipeline's tables in one database."""

    database: str

    @property
    def events(self) -> str:
        return f"{self.database}.events"

    @property
    def deadletter(self) -> str:
        return f"{self.database}.deadletter"

    @property
    def alerts(self) -> str:
        return f"{self.database}.alerts"

    @property
    def rollup(self) -> str:
        return f"{self.database}.events_policy_rollup"

    @property
    def links(self) -> str:
        return f"{self.database}.chain_links"

    @property
    def checkpoints(self) -> str:
        return f"{self.database}.chain_checkpoints"


def _columns(rows: list[tuple[Any, ...]]) -> list[list[Any]]:
    return [list(column) for column in zip(*rows, strict=True)] if rows else []


def rollup_columns(kept_back: Iterable[tuple[KeptBack, int]]) -> list[list[Any]]:
    """The policy's counts, ``(key, count)`` pairs, as columns (ROLLUP_COLUMNS order)."""
    return _columns([(*key, n) for key, n in kept_back])


def link_columns(links: list[ChainLink]) -> list[list[Any]]:
    """Chain links as columns (LINK_COLUMNS order)."""
    return _columns(list(links))
