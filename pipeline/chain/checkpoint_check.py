"""Checking the signed checkpoints (``auditpipe verify``): each one's signature, its place
in its sandbox's checkpoint chain (from the sandbox's horizon once the oldest expired), the
stored row (or kept-back link, collapsed repeat, or retention seal) at its ``seq``; that
every chained row older than the interval is covered; and that the Kafka copy holds
nothing ClickHouse lost. How they are signed is in ``checkpoints.py``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from clickhouse_connect.driver.client import Client

from pipeline.chain.checkpoints import (
    ALGORITHM_V1,
    CHECKPOINT_TTL_MS,
    GENESIS,
    _bytes,
    valid,
    valid_v1,
)
from pipeline.chain.seals import Retained
from pipeline.chain.verify import sandbox_filters
from pipeline.config import Settings
from pipeline.topics import read_to_end


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
    records: list[dict[str, Any]] = []
    await read_to_end(
        settings.kafka,
        settings.kafka.topic_checkpoints,
        lambda record: records.append(orjson.loads(record.value)) if record.value else None,
        client_id="auditpipe-verify",
        timeout_s=timeout_s,
    )
    return records
