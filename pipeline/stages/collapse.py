"""Noise reduction: identical repeats stored once, with a ``repeat_count``.

Events of one sandbox with the same category, action, object, outcome and actor, within
``collapse.windows[category]`` seconds of the first of them, are stored as that first
event with ``repeat_count`` set to how many events it stands for. The repeats are not
stored, but their ``seq``, ``hash`` and ``prev_hash`` travel on the stored event
(``repeat_seqs``, ``repeat_hashes``, ``repeat_prev_hashes``), so ``auditpipe verify``
still follows the hash chain through them (it cannot recompute their content).

Separate from deduplication: a repeat is a new event (its own event_id) that says
nothing new. An event a detection rule matched is never collapsed, and a category
that is not listed in ``collapse.windows`` never is (by default only ``api``).

Repeats are collapsed within the chunk of messages the worker runs through the stages
together (up to 64 Kafka messages or 1 MB, thousands of events under load), so the
stage holds no state between chunks and a replay stores the same rows; a run of repeats
that spans two chunks is stored once per chunk.

>>> stage = CollapseStage(CollapseConfig(windows={"api": 10}))
>>> poll = {"tenant": "t", "sandbox_id": "sb", "category": "api", "action": "call",
...     "object": "GET /status", "outcome": "success", "ts": 1_000, "seq": 1,
...     "hash": None, "prev_hash": None, "actor": {"user": "ci", "uid": 1, "pid": 7,
...     "ppid": 1, "process": "agent", "cmdline": "agent"}}
>>> ctx = BatchContext()
>>> kept = stage.process([dict(poll), dict(poll, ts=4_000), dict(poll, ts=20_000)], ctx)
>>> [(e["ts"], e.get("repeat_count", 1)) for e in kept], ctx.counted("events_collapsed")
([(1000, 2), (20000, 1)], 1)
"""

from __future__ import annotations

from typing import Any

from pipeline.chain.hashing import GENESIS
from pipeline.config import CollapseConfig
from pipeline.schema.event import Event
from pipeline.stages.base import BatchContext, StageBase


class CollapseStage(StageBase):
    name = "collapse"

    def __init__(self, config: CollapseConfig) -> None:
        self.windows_ms = {
            category: int(seconds * 1000) for category, seconds in config.windows.items()
        }

    def process(self, events: list[Event], ctx: BatchContext) -> list[Event]:
        windows_ms = self.windows_ms
        if not windows_ms:
            return events
        runs: dict[tuple[Any, ...], Event] = {}
        kept = []
        collapsed = 0
        for event in events:
            window_ms = windows_ms.get(event["category"])
            if window_ms is None or event.get("matched_rules"):
                kept.append(event)
                continue
            key = _identity(event)
            first = runs.get(key)
            if first is not None and abs(event["ts"] - first["ts"]) <= window_ms:
                _fold(first, event)
                collapsed += 1
                continue
            runs[key] = event
            kept.append(event)
        ctx.count("events_collapsed", collapsed)
        return kept


def _identity(event: Event) -> tuple[Any, ...]:
    actor = event["actor"]
    return (
        event["tenant"],
        event["sandbox_id"],
        event["category"],
        event["action"],
        event["object"],
        event["outcome"],
        actor["user"],
        actor["uid"],
        actor["pid"],
        actor["ppid"],
        actor["process"],
        actor["cmdline"],
        actor.get("parent_process"),
        actor.get("parent_cmdline"),
    )


def _fold(first: Event, repeat: Event) -> None:
    # Set only on events that stand for repeats: the sink sends the repeat columns only
    # for a block that has one.
    first["repeat_count"] = first.get("repeat_count", 1) + 1
    if repeat.get("hash") is None:
        return  # not chained: nothing for verify to link
    if "repeat_seqs" not in first:
        first["repeat_seqs"], first["repeat_hashes"], first["repeat_prev_hashes"] = [], [], []
    first["repeat_seqs"].append(repeat["seq"])
    first["repeat_hashes"].append(repeat["hash"])
    first["repeat_prev_hashes"].append(repeat.get("prev_hash") or GENESIS)
