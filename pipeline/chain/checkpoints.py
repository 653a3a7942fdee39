"""Signed checkpoints of each sandbox's chain head, and their verification.

Every ``checkpoints.interval_s`` (on a timer, so also while no batch arrives) and at a
clean shutdown, the worker writes, for each sandbox whose chain advanced, a row to
``audit.chain_checkpoints``: the sandbox, the ``seq`` and ``hash`` of its last chained
event stored, the time, and an HMAC-SHA256 signature under a key the database never
sees. Someone who can write to ClickHouse can rewrite a sandbox's history from some point
on and recompute every hash after it, so the chain alone would still verify; they cannot
sign a checkpoint for the new hashes.

The checkpoints of a sandbox form a chain of their own (version 2): each is numbered
(``counter``, 1, 2, ...) and signs the previous one's signature (``prev_signature``, 32
zero bytes for the first). A checkpoint removed from the middle, or the newest ones
removed or replaced by older ones (a roll-back), breaks it; and each is also published
to the Kafka topic ``kafka.topic_checkpoints``, a second copy out of ClickHouse's
reach, so that removing the newest checkpoints together with the newest events is
found too.

The signed message (version 2) is the values ``v2``, tenant, sandbox_id, counter, seq,
hash (hex), signed_at (ms) and prev_signature (hex), each written as ``<n>:<bytes>``
(its UTF-8 length in bytes, then the bytes), like the hash chain's canonical form: no
value can be confused with another (``("a|b", "c")`` and ``("a", "b|c")`` sign apart).
Version 1 rows (algorithm ``hmac-sha256``: ``v1|tenant|sandbox|seq|hash|at``, unchained)
are still checked as they were written. The key is ``checkpoints.key`` (a secret, e.g.
``AUDITPIPE_CHECKPOINTS_KEY``) or else the file ``checkpoints.key_file`` (default
``$AUDITPIPE_HOME/checkpoint.key``, created with 32 random bytes on first use, mode 0600).

>>> key = b"k" * 32
>>> first = sign(key, "acme", "sb-1", 1, 7, "ab" * 32, 1_700_000_000_000, GENESIS)
>>> valid(key, "acme", "sb-1", 1, 7, "ab" * 32, 1_700_000_000_000, GENESIS, first)
True
>>> valid(key, "acme", "sb-1", 1, 8, "ab" * 32, 1_700_000_000_000, GENESIS, first)
False
>>> message("a|b", "c", 1, 1, "00", 0, GENESIS) != message("a", "b|c", 1, 1, "00", 0, GENESIS)
True
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from clickhouse_connect.driver.client import Client

from pipeline.chain.seals import Retained
from pipeline.chain.verify import sandbox_filters
from pipeline.config import Settings

ALGORITHM = "hmac-sha256-v2"
"""Version 2: length-prefixed message, numbered and chained to the previous checkpoint."""
ALGORITHM_V1 = "hmac-sha256"
GENESIS = bytes(32)
"""The prev_signature of a sandbox's first checkpoint."""
CHECKPOINT_TTL_MS = 31_536_000_000
"""How long chain_checkpoints keeps a row (its TTL, migration 0009): 365 days."""
CHECKPOINT_COLUMNS = (
    "tenant",
    "sandbox_id",
    "seq",
    "hash",
    "signed_at",
    "key_id",
    "algorithm",
    "signature",
    "counter",
    "prev_signature",
)


class NoKey(Exception):
    """No checkpoint key is configured and the key file does not exist."""


def load_key(settings: Settings, *, create: bool = True) -> bytes:
    """The signing key: the configured secret, or the key file (created if missing and
    ``create``; else NoKey)."""
    config = settings.checkpoints
    if config.key:
        return config.key.encode()
    path = config.key_file or settings.home / "checkpoint.key"
    if not path.exists() and not create:
        raise NoKey(f"no checkpoint key: set checkpoints.key, or the file {path} is missing")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def message(
    tenant: str,
    sandbox_id: str,
    counter: int,
    seq: int,
    hash_hex: str,
    signed_at_ms: int,
    prev_signature: bytes,
) -> bytes:
    """The signed bytes (version 2): every value length-prefixed."""
    values = ("v2", tenant, sandbox_id, str(counter), str(seq), hash_hex.lower(),
              str(signed_at_ms), prev_signature.hex())  # fmt: skip
    return b"".join(b"%d:%s" % (len(v.encode()), v.encode()) for v in values)


def message_v1(tenant: str, sandbox_id: str, seq: int, hash_hex: str, at_ms: int) -> bytes:
    return f"v1|{tenant}|{sandbox_id}|{seq}|{hash_hex.lower()}|{at_ms}".encode()


def sign(
    key: bytes,
    tenant: str,
    sandbox_id: str,
    counter: int,
    seq: int,
    hash_hex: str,
    at_ms: int,
    prev_signature: bytes,
) -> bytes:
    signed = message(tenant, sandbox_id, counter, seq, hash_hex, at_ms, prev_signature)
    return hmac.new(key, signed, hashlib.sha256).digest()


def valid(
    key: bytes,
    tenant: str,
    sandbox_id: str,
    counter: int,
    seq: int,
    hash_hex: str,
    at_ms: int,
    prev_signature: bytes,
    signature: bytes,
) -> bool:
    expected = sign(key, tenant, sandbox_id, counter, seq, hash_hex, at_ms, prev_signature)
    return hmac.compare_digest(expected, signature)


def valid_v1(
    key: bytes, tenant: str, sandbox_id: str, seq: int, hash_hex: str, at_ms: int, sig: bytes
) -> bool:
    signed = message_v1(tenant, sandbox_id, seq, hash_hex, at_ms)
    return hmac.compare_digest(hmac.new(key, signed, hashlib.sha256).digest(), sig)


@dataclass(frozen=True)
class Checkpoint:
    tenant: str
    sandbox_id: str
    counter: int
    seq: int
    hash_hex: str
    signed_at_ms: int
    prev_signature: bytes
    signature: bytes
    key_id: str

    def row(self) -> tuple[Any, ...]:
        """The row in CHECKPOINT_COLUMNS order."""
        return (self.tenant, self.sandbox_id, self.seq, bytes.fromhex(self.hash_hex),
                self.signed_at_ms, self.key_id, ALGORITHM, self.signature, self.counter,
                self.prev_signature)  # fmt: skip

    def record(self) -> dict[str, Any]:
        """The JSON form published to the checkpoints topic."""
        return {
            "tenant": self.tenant,
            "sandbox_id": self.sandbox_id,
            "counter": self.counter,
            "seq": self.seq,
            "hash": self.hash_hex,
            "signed_at": self.signed_at_ms,
            "prev_signature": self.prev_signature.hex(),
            "signature": self.signature.hex(),
            "key_id": self.key_id,
            "algorithm": ALGORITHM,
        }


Last = dict[tuple[str, str], tuple[int, bytes]]
"""(tenant, sandbox_id) -> (counter, signature) of its newest checkpoint."""


class CheckpointSigner:
    """Signs chain heads into each sandbox's checkpoint chain.

    It continues each sandbox's chain from its newest stored checkpoint, asked of
    ``load_last`` the first time the sandbox is signed in this process (a restarted
    worker, or one that gained the sandbox's partition, picks up where the last left).
    """

    def __init__(
        self, key: bytes, key_id: str, load_last: Callable[[set[tuple[str, str]]], Last]
    ) -> None:
        self.key = key
        self.key_id = key_id
        self.load_last = load_last
        self.last: Last = {}

    def sign(self, heads: Iterable[tuple[str, str, int, str]], now_ms: int) -> list[Checkpoint]:
        heads = list(heads)
        unknown = {(t, s) for t, s, _, _ in heads} - self.last.keys()
        if unknown:
            loaded = self.load_last(unknown)
            for sandbox in unknown:
                self.last[sandbox] = loaded.get(sandbox, (0, GENESIS))
        out = []
        for tenant, sandbox_id, seq, hash_hex in heads:
            counter, previous = self.last[(tenant, sandbox_id)]
            counter += 1
            signature = sign(self.key, tenant, sandbox_id, counter, seq, hash_hex, now_ms, previous)
            out.append(Checkpoint(tenant, sandbox_id, counter, seq, hash_hex, now_ms, previous,
                                  signature, self.key_id))  # fmt: skip
            self.last[(tenant, sandbox_id)] = (counter, signature)
        return out


def checkpoint_columns(checkpoints: list[Checkpoint]) -> list[list[Any]]:
    """Columns (CHECKPOINT_COLUMNS order) of the checkpoints' rows."""
    rows = [c.row() for c in checkpoints]
    return [list(column) for column in zip(*rows, strict=True)] if rows else []


def last_checkpoints(client_query: Any, database: str, sandboxes: set[tuple[str, str]]) -> Last:
    """The newest version-2 checkpoint (counter, signature) of each sandbox, from
    ClickHouse (``client_query(sql, parameters) -> rows``); for a sandbox whose
    checkpoints all expired by retention, the one its horizon recorded
    (``pipeline/chain/seals.py``), so its checkpoint chain goes on from there."""
    if not sandboxes:
        return {}
    rows = client_query(
        f"SELECT tenant, sandbox_id, max(counter), argMax(signature, counter) FROM ("
        f"SELECT tenant, sandbox_id, counter, signature FROM {database}.chain_checkpoints "
        f"WHERE algorithm = '{ALGORITHM}' AND (tenant, sandbox_id) IN %(sandboxes)s "
        f"UNION ALL SELECT tenant, sandbox_id, counter, signature "
        f"FROM {database}.chain_horizons WHERE (tenant, sandbox_id) IN %(sandboxes)s"
        ") GROUP BY tenant, sandbox_id",
        {"sandboxes": sorted(sandboxes)},
    )
    return {(str(t), str(s)): (int(c), _bytes(sig)) for t, s, c, sig in rows}


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("latin-1")


@dataclass(frozen=True)
class CheckpointFinding:
    tenant: str
    sandbox_id: str
    seq: int
    detail: str


@dataclass
class CheckpointReport:
    checked: int = 0
    findings: list[CheckpointFinding] = field(default_factory=list)

    def add(self, tenant: str, sandbox_id: str, seq: int, detail: str) -> None:
        self.findings.append(CheckpointFinding(tenant, sandbox_id, seq, detail))


def verify_checkpoints(
    client: Client,
    database: str,
    key: bytes,
    key_id: str,
    *,
    tenant: str | None = None,
    sandbox: str | None = None,
    require_after_s: float | None = None,
    kafka_copy: list[dict[str, Any]] | None = None,
    retained: Retained | None = None,
) -> CheckpointReport:
    """Every signed checkpoint checked: its signature, its place in its sandbox's
    checkpoint chain, and the stored row (or kept-back link, or collapsed repeat) at its
    ``seq`` (or the retention seal or horizon that shows it expired: ``retained``).
    With ``require_after_s``, every chained row stored longer ago than that must
    be covered by a checkpoint; with ``kafka_copy``, every checkpoint of the Kafka copy
    must be in ClickHouse."""
    where, params = sandbox_filters(tenant, sandbox, alias="c.")
    rows = client.query(
        f"""
        SELECT c.tenant, c.sandbox_id, c.seq, hex(c.hash), toUnixTimestamp64Milli(c.signed_at),
               c.key_id, c.algorithm, c.signature, c.counter, c.prev_signature,
               groupArray(s.h) AS stored
        FROM {database}.chain_checkpoints AS c
        LEFT JOIN ({_STORED_HEADS.format(db=database)}) AS s
          ON s.tenant = c.tenant AND s.sandbox_id = c.sandbox_id AND s.seq = c.seq
        {where}
        GROUP BY c.tenant, c.sandbox_id, c.seq, c.hash, c.signed_at, c.key_id, c.algorithm,
                 c.signature, c.counter, c.prev_signature
        ORDER BY c.tenant, c.sandbox_id, c.counter, c.seq
        """,
        parameters=params,
    ).result_rows
    report = CheckpointReport(checked=len(rows))
    retained = retained or Retained()
    now_s = time.time_ns() // 1_000_000_000
    chains: dict[tuple[str, str], list[tuple[int, bytes, bytes, int]]] = {}
    for t, s, seq, hash_hex, at_ms, used_key, algorithm, sig, counter, prev, stored in rows:
        t, s, seq, sig, prev = str(t), str(s), int(seq), _bytes(sig), _bytes(prev)
        if used_key != key_id:
            report.add(t, s, seq, f"signed with key {used_key!r}, not {key_id!r}")
        elif algorithm == ALGORITHM_V1:
            if not valid_v1(key, t, s, seq, hash_hex, int(at_ms), sig):
                report.add(t, s, seq, "signature does not match: forged or altered checkpoint")
        elif not valid(key, t, s, int(counter), seq, hash_hex, int(at_ms), prev, sig):
            report.add(t, s, seq, "signature does not match: forged or altered checkpoint")
        else:
            chains.setdefault((t, s), []).append((int(counter), prev, sig, seq))
        if not retained.covers((t, s), seq, hash_hex, now_s):
            _check_stored(report, t, s, seq, hash_hex, stored)
    for (t, s), chain in chains.items():
        horizon = retained.horizons.get((t, s))
        start = (horizon.counter, bytes.fromhex(horizon.signature)) if horizon else (0, GENESIS)
        _check_chain(report, t, s, [c for c in chain if c[0] > start[0]], start)
    if require_after_s is not None:
        _check_covered(client, database, report, where.replace("c.", ""), params, require_after_s)
    if kafka_copy is not None:
        _check_copy(report, chains, kafka_copy, tenant, sandbox, retained)
    return report


_STORED_HEADS = """
    SELECT tenant, sandbox_id, seq, hex(assumeNotNull(hash)) AS h FROM {db}.events
    WHERE hash IS NOT NULL
    UNION ALL
    SELECT tenant, sandbox_id, r.1, hex(r.2) FROM {db}.events
    ARRAY JOIN arrayZip(repeat_seqs, repeat_hashes) AS r
    UNION ALL
    SELECT tenant, sandbox_id, seq, hex(hash) FROM {db}.chain_links
"""
"""Where a signed head may be: a stored row, a collapsed repeat, or a kept-back link."""


def _check_stored(
    report: CheckpointReport, t: str, s: str, seq: int, hash_hex: str, stored: list[str]
) -> None:
    stored_hashes = [h for h in stored if h and h != "0" * 64]
    if not stored_hashes:
        report.add(t, s, seq, "no stored row at the checkpointed seq")
    elif hash_hex.lower() not in (h.lower() for h in stored_hashes):
        report.add(
            t, s, seq,
            f"stored hash {stored_hashes[0][:16].lower()}... is not the signed "
            f"{hash_hex[:16].lower()}...: history rewritten",
        )  # fmt: skip


def _check_chain(
    report: CheckpointReport,
    t: str,
    s: str,
    chain: list[tuple[int, bytes, bytes, int]],
    start: tuple[int, bytes] = (0, GENESIS),
) -> None:
    """Counters 1, 2, ... each signing the one before: a gap is a removed checkpoint, a
    link to anything else a roll-back or a replacement. ``start`` is the sandbox's
    horizon (counter, signature): the checkpoints up to it expired by retention."""
    expected, previous = start[0] + 1, start[1]
    for counter, prev, sig, seq in chain:
        if counter < expected:
            report.add(t, s, seq, f"checkpoint {counter} appears twice: replaced")
            continue
        if counter > expected:
            report.add(
                t, s, seq,
                f"checkpoints {expected}..{counter - 1} are missing: removed (or rolled back)",
            )  # fmt: skip
        elif prev != previous:
            report.add(t, s, seq, f"checkpoint {counter} does not follow checkpoint "
                                  f"{counter - 1}: rolled back or replaced")  # fmt: skip
        expected, previous = counter + 1, sig


def _check_covered(
    client: Client,
    database: str,
    report: CheckpointReport,
    where: str,
    params: dict[str, Any],
    after_s: float,
) -> None:
    """Chained rows stored longer ago than ``after_s`` must be covered by a checkpoint."""
    old = f"ingested_at < now64(3) - toIntervalMillisecond({round(after_s * 1000)})"
    clause = f"{where} AND {old}" if where else f"WHERE {old}"
    rows = client.query(
        f"""
        SELECT x.tenant, x.sandbox_id, max(x.seq) AS newest, any(c.signed) AS signed
        FROM (SELECT tenant, sandbox_id, seq FROM {database}.events {clause}
                AND hash IS NOT NULL
              UNION ALL
              SELECT tenant, sandbox_id, seq FROM {database}.chain_links {clause}) AS x
        LEFT JOIN (SELECT tenant, sandbox_id, max(seq) AS signed
                   FROM {database}.chain_checkpoints GROUP BY tenant, sandbox_id) AS c
          ON c.tenant = x.tenant AND c.sandbox_id = x.sandbox_id
        GROUP BY x.tenant, x.sandbox_id
        HAVING newest > signed
        ORDER BY x.tenant, x.sandbox_id
        """,
        parameters=params,
    ).result_rows
    for t, s, newest, signed in rows:
        report.add(
            str(t), str(s), int(newest),
            f"stored more than {after_s:g} s ago but not covered by a signed checkpoint "
            f"(the newest signs seq {int(signed)}): unsigned rows, or checkpoints removed",
        )  # fmt: skip


def _check_copy(
    report: CheckpointReport,
    chains: dict[tuple[str, str], list[tuple[int, bytes, bytes, int]]],
    kafka_copy: list[dict[str, Any]],
    tenant: str | None,
    sandbox: str | None,
    retained: Retained,
) -> None:
    """Every checkpoint of the Kafka copy must be in ClickHouse (same signature), but
    those before the sandbox's horizon (expired by retention)."""
    stored = {(t, s, counter, sig) for (t, s), chain in chains.items()
              for counter, _, sig, _ in chain}  # fmt: skip
    # Rows of chain_checkpoints expire after a year (migration 0009); the copy is kept a
    # little longer, so a record past that age may be gone from ClickHouse by design.
    expired_before = time.time_ns() // 1_000_000 - CHECKPOINT_TTL_MS
    for record in kafka_copy:
        t, s = record["tenant"], record["sandbox_id"]
        if (tenant and t != tenant) or (sandbox and s != sandbox):
            continue
        horizon = retained.horizons.get((t, s))
        if int(record["signed_at"]) < expired_before or (
            horizon and int(record["counter"]) <= horizon.counter
        ):
            continue
        key = (t, s, int(record["counter"]), bytes.fromhex(record["signature"]))
        if key not in stored:
            report.add(
                t, s, int(record["seq"]),
                f"checkpoint {record['counter']} of the Kafka copy is not in ClickHouse: "
                "removed (with the rows it signed?)",
            )  # fmt: skip


def database_has_checkpoints(client: Client, database: str) -> bool:
    return bool(
        client.query(
            "SELECT count() FROM system.tables WHERE database = {db:String} "
            "AND name = 'chain_checkpoints'",
            parameters={"db": database},
        ).result_rows[0][0]
    )


async def read_checkpoint_copy(settings: Settings, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """Every checkpoint record on the checkpoints topic (the second copy), from the
    start to the end each partition had when asked. A topic that does not exist (no
    worker has signed yet) is empty."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    topic = settings.kafka.topic_checkpoints
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap,
        enable_auto_commit=False,
        client_id="auditpipe-verify",
    )
    await consumer.start()
    records: list[dict[str, Any]] = []
    try:
        if topic not in await consumer.topics():
            return records
        partitions = consumer.partitions_for_topic(
            topic
        ) or await consumer._client._wait_on_metadata(topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return records
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        remaining = {tp: end for tp, end in ends.items() if end > 0}
        async with asyncio.timeout(timeout_s):
            while remaining:
                batch = await consumer.getmany(*remaining, timeout_ms=1000)
                for tp, messages in batch.items():
                    records.extend(orjson.loads(m.value) for m in messages if m.value)
                    if messages and messages[-1].offset + 1 >= remaining.get(tp, 0):
                        remaining.pop(tp, None)
    finally:
        await consumer.stop()
    return records
