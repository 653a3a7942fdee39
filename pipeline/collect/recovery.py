"""What a collector needs after a crash, and the events it makes itself.

The messages of a spool group that was sent but whose acknowledgement was lost may be in
Kafka already: ``delivered_seqs`` reads each chain's highest delivered seq from the
events topic (message headers only), so recovery re-sends only what is missing.
``filtered_counts_event`` is the ``lifecycle/filtered_counts`` event with which the level
filter reports what it kept back (counted, never silently dropped).
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from pipeline.config import Settings
from pipeline.schema.event import Event
from pipeline.topics import read_to_end

SEQ_HEADER = "auditpipe-seq"
"""Message header: the first and last seq of the message's events (``first-last``)."""


def filtered_counts_event(tenant: str, sandbox: str, attributes: dict[str, str]) -> Event:
    """One sandbox's counts of the events the level filter kept back (unchained)."""
    return {
        "event_id": str(uuid.uuid4()),
        "ts": time.time_ns() // 1_000_000,
        "tenant": tenant,
        "sandbox_id": sandbox,
        "seq": None,
        "category": "lifecycle",
        "action": "filtered_counts",
        "level": "notice",
        "outcome": "success",
        "actor": {
            "user": "",
            "uid": None,
            "pid": os.getpid(),
            "ppid": None,
            "process": "auditpipe-collector",
            "cmdline": "",
            "parent_process": "",
            "parent_cmdline": "",
        },
        "object": "level-filter",
        "bytes": None,
        "attributes": attributes,
        "prev_hash": None,
        "hash": None,
    }


async def delivered_seqs(settings: Settings, chains: set[str], since_ms: int) -> dict[str, int]:
    """The highest seq of each chain in the events topic, from since_ms on (headers only)."""
    highest: dict[str, int] = {}
    keys = {s.encode() for s in chains}

    def note(record: Any) -> None:
        if record.key in keys:
            _note_seq(highest, record)

    await read_to_end(
        settings.kafka,
        settings.kafka.topic_events,
        note,
        client_id="collector-recovery",
        since_ms=since_ms,
    )
    return highest


def _note_seq(highest: dict[str, int], record: Any) -> None:
    for name, value in record.headers or ():
        if name == SEQ_HEADER:
            last = int(value.split(b"-")[1])
            chain = record.key.decode()
            highest[chain] = max(highest.get(chain, 0), last)
