"""Live checks of each sandbox's hash chain, as events arrive: integrity alerts.

Per sandbox the monitor keeps the last ``seq`` and ``hash`` seen (and the hashes of the
last few seqs). An arriving event is checked against them:

* **gap**: its ``seq`` skips numbers. Events were lost or suppressed on the way, which is
  what an intruder inside a sandbox would cause;
* **fork**: its ``prev_hash`` does not link to the previous event's ``hash``, or a ``seq``
  seen before comes again with another ``hash``: history was rewritten;
* **hash mismatch**: its ``hash`` is not SHA-256(prev_hash || canonical bytes), so the
  event was changed after the collector chained it.

The first event seen of a sandbox is taken as it is (the monitor does not know what came
before). The state is kept in memory only: after a worker restart or a rebalance, each
sandbox's next event is its new baseline, so a gap that spans the restart is left to
``auditpipe verify`` (which checks the stored chains in full). Persisting every chain
head after every batch multiplied the changelog traffic of the worker's Faust tables.
Events without ``seq`` are not checked; without ``hash``, only the ``seq``.

>>> monitor = ChainMonitor()
>>> ev = lambda seq: {"tenant": "t", "sandbox_id": "sb", "seq": seq, "prev_hash": None,
...                   "hash": None, "event_id": f"e{seq}", "kafka_partition": 0}
>>> [monitor.check(ev(s)) for s in (1, 2, 5)]
[[], [], [('gap', 'seq 5 follows 2: 2 events missing (3..4)')]]
"""

from __future__ import annotations

import orjson

from pipeline.chain.hashing import link
from pipeline.rules.windows import Key, Watermarks, _KeyedState
from pipeline.schema.event import Event

RECENT_SEQS = 32
"""Hashes kept per sandbox to recognise a seq that comes again with other content."""
IDLE_MS = 7 * 86_400_000
"""A sandbox silent this long (in event time) is forgotten."""
INTEGRITY_RULES = {
    "gap": ("AP-INT-GAP", "Audit trail gap: events missing or suppressed"),
    "fork": ("AP-INT-FORK", "Audit trail fork: history rewritten"),
    "hash": ("AP-INT-HASH", "Audit event changed after it was chained"),
    "replay": ("AP-INT-REPLAY", "Audit event id replayed with other content"),
}
INTEGRITY_TAGS = ("integrity", "attack.defense_evasion", "attack.t1070")


class _Head:
    __slots__ = ("checkpointed", "recent", "seq", "ts")

    def __init__(self, seq: int, ts: int, recent: dict[int, str]) -> None:
        self.seq = seq
        self.ts = ts
        self.recent = recent
        self.checkpointed = 0
        """The head's seq when the last checkpoint was taken (what it signed, or an
        earlier stored seq when the newest events were dead-lettered)."""


class ChainMonitor(_KeyedState):
    def __init__(self, verify_hashes: bool = True) -> None:
        super().__init__(lateness_ms=0)
        self.verify_hashes = verify_hashes
        self.unstored: set[tuple[str, str, int]] = set()
        """Chained events dead-lettered after this check, until the next checkpoint."""

    def check(self, event: Event) -> list[tuple[str, str]]:
        """The findings for one event: (gap | fork | hash, detail)."""
        seq = event.get("seq")
        if seq is None:
            return []
        findings = []
        digest = event.get("hash")
        if digest is not None and self.verify_hashes:
            prev = event.get("prev_hash")
            if prev is not None and link(prev, event) != digest:
                findings.append(("hash", f"seq {seq}: hash does not match its content"))
        key = (event.get("tenant") or "", event.get("sandbox_id") or "")
        hex_digest = digest.hex() if isinstance(digest, bytes | bytearray) else None
        head = self.keys.get(key)
        self._touch(key, event.get("kafka_partition") or 0)
        if head is None:
            self.keys[key] = _Head(
                seq, event.get("ts") or 0, {seq: hex_digest} if hex_digest else {}
            )
            return findings
        findings.extend(self._against(head, seq, event, hex_digest))
        if seq > head.seq:
            head.seq = seq
            head.ts = max(head.ts, event.get("ts") or 0)
        if hex_digest is not None:
            head.recent.setdefault(seq, hex_digest)
            if len(head.recent) > RECENT_SEQS:
                del head.recent[min(head.recent)]
        return findings

    @staticmethod
    def _against(
        head: _Head, seq: int, event: Event, hex_digest: str | None
    ) -> list[tuple[str, str]]:
        if seq <= head.seq:
            known = head.recent.get(seq)
            if known is not None and hex_digest is not None and known != hex_digest:
                return [("fork", f"seq {seq} came again with another hash")]
            return []  # a replayed event (dedup drops it) or one older than we keep
        findings = []
        if seq > head.seq + 1:
            missing = f"{seq - head.seq - 1} events missing ({head.seq + 1}..{seq - 1})"
            findings.append(("gap", f"seq {seq} follows {head.seq}: {missing}"))
        prev = event.get("prev_hash")
        last = head.recent.get(head.seq)
        if seq == head.seq + 1 and prev is not None and last is not None and prev.hex() != last:
            findings.append(("fork", f"seq {seq}: prev_hash does not link to seq {head.seq}"))
        return findings

    def not_stored(self, events: list[tuple[str, str, int]]) -> None:
        """Chained events seen here but dead-lettered later (tenant, sandbox_id, seq):
        the next checkpoint signs the newest stored event of their chains instead."""
        self.unstored.update(events)

    def take_checkpoints(self) -> list[tuple[str, str, int, str]]:
        """(tenant, sandbox_id, seq, hash hex) of each chain's newest stored event, for
        each chain that advanced since the last call (called once the batch is stored)."""
        heads = []
        unstored, self.unstored = self.unstored, set()
        for (tenant, sandbox_id), head in self.keys.items():
            if head.seq <= head.checkpointed:
                continue
            seq = head.seq
            while (tenant, sandbox_id, seq) in unstored and seq > head.checkpointed:
                seq -= 1
            digest = head.recent.get(seq)
            if digest is not None and seq > head.checkpointed:
                heads.append((tenant, sandbox_id, seq, digest))
            head.checkpointed = head.seq
        return heads

    def expire(self, watermarks: Watermarks) -> None:
        for key in [k for k, h in self.keys.items() if h.ts < watermarks.of(k[0]) - IDLE_MS]:
            del self.keys[key]
            self.dirty.add(key)

    def encode(self, key: Key) -> bytes | None:
        head = self.keys.get(key)
        if head is None:
            return None
        return orjson.dumps([head.seq, head.ts, {str(k): v for k, v in head.recent.items()}])

    def decode(self, key: Key, data: bytes) -> None:
        seq, ts, recent = orjson.loads(data)
        self.keys[key] = _Head(seq, ts, {int(k): v for k, v in recent.items()})


def integrity_findings(monitor: ChainMonitor, events: list[Event]) -> list[tuple[Event, str, str]]:
    """(event, kind, detail) of every finding in a batch."""
    out: list[tuple[Event, str, str]] = []
    check = monitor.check
    for event in events:
        for kind, detail in check(event):
            out.append((event, kind, detail))
    return out
