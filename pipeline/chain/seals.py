r"""Retention-aware tamper evidence: ``auditpipe retention seal``.

Retention removes rows by class from the middle of every chain (debug after 3 days,
info after 30, security after 365: ``pipeline/chain/retention.py``). Without a record of what
left, ``verify`` would see those gaps as deletions, and a real deletion would hide among
them. So, before rows expire, the sealer signs what the chain needs to stay verifiable:

* a **seal** (``audit.chain_seals``) for each run of consecutive chain items (rows,
  collapsed repeats, kept-back links) of one sandbox that expire within
  ``--margin`` and within the same hour: its first and last seq, the prev_hash of the
  first, the hash of the last, and when its items expire (``expires_from`` ..
  ``expires_to``). ``verify`` follows the chain across a seal only once
  ``expires_from`` is due; before that the rows must all be there. A seal is kept as long
  as the longest class (``keep_until``).
* each sandbox's **horizon** (``audit.chain_horizons``): once the seals at the start of
  its chain reach ``keep_until`` themselves, the point (seq, hash) before which its chain
  has expired entirely, and the newest of its checkpoints that expired
  (counter, signature), so ``verify`` starts both chains there.

Only what verifies is sealed: a row whose content no longer matches its hash, two rows
with one seq, or a broken link ends a run; what is left unsealed stays a finding after
it expires. The class of a row comes from fields the chain covers (level, outcome,
category; not the stored severity), so a row cannot be moved to a shorter-lived class
unseen. Both records carry an HMAC-SHA256 under the checkpoint key, over their values
length-prefixed like the chain's canonical form; ``verify`` reports any record whose
signature does not match. So a deletion hides only among rows whose expiry was due
within the hour anyway; everything else that goes missing is reported. Run the sealer
more often than the margin (hourly, with the default day of margin), and again after
``retention apply`` changes a period.

>>> key = b"k" * 32
>>> record = SealRecord("acme", "sb-1", 1, 9, "00" * 32, "ab" * 32, 9, 0, 1, 2, 3, 4, 5)
>>> sign_seal(key, record) == sign_seal(key, record)
True
>>> sign_seal(key, record) == sign_seal(key, record._replace(expires_from_s=1))
False
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from clickhouse_connect.driver.client import Client

from pipeline.chain.items import GENESIS_HEX, covers_sql, items_sql, uncovered
from pipeline.chain.retention import ttl_seconds
from pipeline.config import RetentionConfig

CHECKPOINT_TTL_S = 31_536_000
"""How long chain_checkpoints keeps a row (migration 0009)."""
SEAL_COLUMNS = (
    "tenant", "sandbox_id", "first_seq", "last_seq", "prev_hash", "hash", "items",
    "first_ts", "last_ts", "expires_from", "expires_to", "keep_until", "sealed_at",
    "key_id", "mac",
)  # fmt: skip
HORIZON_COLUMNS = (
    "tenant", "sandbox_id", "seq", "hash", "counter", "signature", "due_at", "sealed_at",
    "key_id", "mac",
)  # fmt: skip


class SealRecord(NamedTuple):
    tenant: str
    sandbox_id: str
    first_seq: int
    last_seq: int
    prev_hash: str
    hash: str
    items: int
    first_ts_ms: int
    last_ts_ms: int
    expires_from_s: int
    expires_to_s: int
    keep_until_s: int
    sealed_at_ms: int


class HorizonRecord(NamedTuple):
    tenant: str
    sandbox_id: str
    seq: int
    hash: str
    counter: int
    signature: str
    due_at_s: int
    sealed_at_ms: int


def _message(kind: str, values: Iterable[Any]) -> bytes:
    parts = [kind, *(str(v).lower() if isinstance(v, str) else str(v) for v in values)]
    return b"".join(b"%d:%s" % (len(p.encode()), p.encode()) for p in parts)


def sign_seal(key: bytes, record: SealRecord) -> bytes:
    return hmac.new(key, _message("seal-v1", record), hashlib.sha256).digest()


def sign_horizon(key: bytes, record: HorizonRecord) -> bytes:
    return hmac.new(key, _message("horizon-v1", record), hashlib.sha256).digest()


@dataclass
class SealReport:
    seals: int = 0
    items: int = 0
    horizons: int = 0
    broken: int = 0
    """Sandboxes whose expiring items could not all be sealed (a finding for verify)."""


def seal(
    client: Client,
    database: str,
    retention: RetentionConfig,
    key: bytes,
    key_id: str,
    *,
    margin_s: float = 86_400,
) -> SealReport:
    """Seal every run of chain items expiring within ``margin_s``, then advance the
    horizons; returns what was written."""
    report = SealReport()
    now_ms = time.time_ns() // 1_000_000
    records = _runs(client, database, retention, margin_s)
    if records:
        rows = [
            (r.tenant, r.sandbox_id, r.first_seq, r.last_seq, bytes.fromhex(r.prev_hash),
             bytes.fromhex(r.hash), r.items, _ms(r.first_ts_ms), _ms(r.last_ts_ms),
             _s(r.expires_from_s), _s(r.expires_to_s), _s(r.keep_until_s), _ms(now_ms),
             key_id, sign_seal(key, r._replace(sealed_at_ms=now_ms)))
            for r in records
        ]  # fmt: skip
        client.insert(f"{database}.chain_seals", rows, column_names=list(SEAL_COLUMNS))
        report.seals, report.items = len(rows), sum(r.items for r in records)
    horizons = _advance(client, database, key, key_id, margin_s, now_ms)
    if horizons:
        client.insert(f"{database}.chain_horizons", horizons, column_names=list(HORIZON_COLUMNS))
    report.horizons = len(horizons)
    return report


def _runs(
    client: Client, database: str, retention: RetentionConfig, margin_s: float
) -> list[SealRecord]:
    """The runs to seal: consecutive, linked, content-checked items of one sandbox, none
    spanned by a cover yet, expiring within the margin and within one hour."""
    margin = f"toIntervalSecond({round(margin_s)})"
    shortest = min(retention.debug_days, retention.info_days, retention.security_days)
    horizon = f"now() + {margin} - toIntervalSecond({ttl_seconds(shortest)})"
    items = (
        items_sql(database, "", retention, recompute=True, ts_before=horizon)
        + " UNION ALL "
        + covers_sql(database, "", due_only=False)
    )
    window = (
        "PARTITION BY tenant, sandbox_id ORDER BY seq, ingested_at "
        "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW"
    )
    sql = f"""
    SELECT tenant, sandbox_id, min(seq), max(seq), argMin(p, seq), argMax(h, seq), count(),
      toUnixTimestamp64Milli(min(ts)), toUnixTimestamp64Milli(max(ts)),
      toUnixTimestamp(min(expire_at)), toUnixTimestamp(max(expire_at))
    FROM (
      SELECT *, sum(starts) OVER (PARTITION BY tenant, sandbox_id ORDER BY seq, ingested_at
                                  ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS run
      FROM (
        SELECT *, NOT (prev_sealable AND p = prev_h AND seq = prev_seq + 1
                       AND toStartOfHour(expire_at) = prev_hour) AS starts
        FROM (
          SELECT *, lagInFrame(sealable, 1, 0) OVER w AS prev_sealable,
            lagInFrame(h, 1, '') OVER w AS prev_h, lagInFrame(seq, 1, 0) OVER w AS prev_seq,
            lagInFrame(toStartOfHour(expire_at), 1, toDateTime(0, 'UTC')) OVER w AS prev_hour
          FROM (
            SELECT *, (expire_at <= now() + {margin} AND recomputed = h AND same_seq = 1)
                      AS sealable
            FROM (
              SELECT *, count() OVER (PARTITION BY tenant, sandbox_id, seq) AS same_seq
              FROM ({uncovered(items)})
            )
          )
          WINDOW w AS ({window})
        )
      )
    )
    WHERE sealable
    GROUP BY tenant, sandbox_id, run
    ORDER BY tenant, sandbox_id, min(seq)
    """
    keep = ttl_seconds(retention.security_days)
    return [
        SealRecord(str(t), str(s), int(lo), int(hi), str(p).lower(), str(h).lower(), int(n),
                   int(first), int(last), int(e_from), int(e_to), int(first) // 1000 + keep, 0)
        for t, s, lo, hi, p, h, n, first, last, e_from, e_to in client.query(sql).result_rows
    ]  # fmt: skip


def _advance(
    client: Client, database: str, key: bytes, key_id: str, margin_s: float, now_ms: int
) -> list[tuple[Any, ...]]:
    """New horizons: for each sandbox, past the valid seals contiguous from its current
    horizon (or the genesis) that reach ``keep_until`` within the margin, and past its
    checkpoints that expire within it."""
    due_by = now_ms // 1000 + round(margin_s)
    loaded = load(client, database, key, "")
    current = {s: h for s, h in loaded.horizons_all.items()}
    expiring = client.query(
        f"SELECT tenant, sandbox_id, max(counter), argMax(hex(signature), counter), "
        f"toUnixTimestamp(max(signed_at)) + {CHECKPOINT_TTL_S} "
        f"FROM {database}.chain_checkpoints WHERE algorithm = 'hmac-sha256-v2' "
        f"AND toUnixTimestamp(signed_at) + {CHECKPOINT_TTL_S} <= {due_by} "
        "GROUP BY tenant, sandbox_id"
    ).result_rows
    checkpoints = {(str(t), str(s)): (int(c), str(sig).lower(), int(at))
                   for t, s, c, sig, at in expiring}  # fmt: skip
    out = []
    for sandbox in sorted(set(loaded.seals) | checkpoints.keys()):
        old = current.get(sandbox)
        seq, hash_hex = (old.seq, old.hash) if old else (0, GENESIS_HEX)
        counter, signature = (old.counter, old.signature) if old else (0, GENESIS_HEX)
        due_at = old.due_at_s if old else 0
        for s in loaded.seals.get(sandbox, []):
            if s.first_seq != seq + 1 or s.prev_hash != hash_hex or s.keep_until_s > due_by:
                break
            seq, hash_hex, due_at = s.last_seq, s.hash, max(due_at, s.keep_until_s)
        if sandbox in checkpoints and checkpoints[sandbox][0] > counter:
            counter, signature, expires = checkpoints[sandbox]
            due_at = max(due_at, expires)
        if old and (seq, counter) == (old.seq, old.counter):
            continue
        if not old and seq == 0 and counter == 0:
            continue
        record = HorizonRecord(*sandbox, seq, hash_hex, counter, signature, due_at, now_ms)
        out.append((*sandbox, seq, bytes.fromhex(hash_hex), counter, bytes.fromhex(signature),
                    _s(due_at), _ms(now_ms), key_id, sign_horizon(key, record)))  # fmt: skip
    return out


Sandbox = tuple[str, str]


@dataclass
class Retained:
    """The seals and horizons of the chains checked, their signatures verified."""

    seals: dict[Sandbox, list[SealRecord]] = field(default_factory=dict)
    """Valid seals by sandbox, by first_seq."""
    horizons: dict[Sandbox, HorizonRecord] = field(default_factory=dict)
    """The newest valid *due* horizon of each sandbox (what verify starts from)."""
    horizons_all: dict[Sandbox, HorizonRecord] = field(default_factory=dict)
    """The newest valid horizon of each sandbox, due or not (what the sealer continues)."""
    forged: list[tuple[str, str, int, str]] = field(default_factory=list)
    """(tenant, sandbox, seq, detail) of records whose signature does not match."""
    forged_seals: list[tuple[str, str, int, int, str]] = field(default_factory=list)
    forged_horizons: list[tuple[str, str, int, str]] = field(default_factory=list)
    """The forged records themselves (verify lets them cover nothing)."""

    def covers(self, sandbox: Sandbox, seq: int, hash_hex: str, now_s: int) -> bool:
        """Whether a signed head at ``seq`` may be gone by retention: at or before the
        due horizon, or inside a due seal (its last seq with the sealed hash)."""
        horizon = self.horizons.get(sandbox)
        if horizon and seq <= horizon.seq:
            return seq < horizon.seq or hash_hex.lower() == horizon.hash
        for s in self.seals.get(sandbox, []):
            if s.first_seq <= seq <= s.last_seq and s.expires_from_s <= now_s:
                return seq < s.last_seq or hash_hex.lower() == s.hash
        return False


def load(client: Client, database: str, key: bytes, key_id: str, where: str = "",
         params: dict[str, Any] | None = None) -> Retained:  # fmt: skip
    """Every seal and horizon ``where`` selects, checked against ``key`` (and
    ``key_id``, unless empty)."""
    out = Retained()
    now_s = time.time_ns() // 1_000_000_000
    for row in client.query(
        f"SELECT tenant, sandbox_id, first_seq, last_seq, hex(prev_hash), hex(hash), items, "
        f"toUnixTimestamp64Milli(first_ts), toUnixTimestamp64Milli(last_ts), "
        f"toUnixTimestamp(expires_from), toUnixTimestamp(expires_to), "
        f"toUnixTimestamp(keep_until), toUnixTimestamp64Milli(sealed_at), key_id, mac "
        f"FROM {database}.chain_seals {where} ORDER BY tenant, sandbox_id, first_seq",
        parameters=params or {},
    ).result_rows:
        n = [int(v) for v in (*row[2:4], *row[6:13])]
        record = SealRecord(str(row[0]), str(row[1]), n[0], n[1], str(row[4]).lower(),
                            str(row[5]).lower(), *n[2:])  # fmt: skip
        if _forged(key, key_id, row[13], row[14], sign_seal(key, record)):
            out.forged.append((record.tenant, record.sandbox_id, record.first_seq,
                               f"seal of seq {record.first_seq}..{record.last_seq}: "
                               "signature does not match: forged or altered"))  # fmt: skip
            out.forged_seals.append((record.tenant, record.sandbox_id, record.first_seq,
                                     record.last_seq, record.hash.upper()))  # fmt: skip
            continue
        out.seals.setdefault((record.tenant, record.sandbox_id), []).append(record)
    for row in client.query(
        f"SELECT tenant, sandbox_id, seq, hex(hash), counter, hex(signature), "
        f"toUnixTimestamp(due_at), toUnixTimestamp64Milli(sealed_at), key_id, mac "
        f"FROM {database}.chain_horizons {where} ORDER BY tenant, sandbox_id, due_at, seq",
        parameters=params or {},
    ).result_rows:
        t, s, seq, hash_hex, counter, sig, due, at = row[:8]
        horizon = HorizonRecord(str(t), str(s), int(seq), str(hash_hex).lower(), int(counter),
                                str(sig).lower(), int(due), int(at))  # fmt: skip
        if _forged(key, key_id, row[8], row[9], sign_horizon(key, horizon)):
            out.forged.append((horizon.tenant, horizon.sandbox_id, horizon.seq,
                               "horizon: signature does not match: forged or altered"))  # fmt: skip
            out.forged_horizons.append((horizon.tenant, horizon.sandbox_id, horizon.seq,
                                        horizon.hash.upper()))  # fmt: skip
            continue
        sandbox = (horizon.tenant, horizon.sandbox_id)
        out.horizons_all[sandbox] = horizon
        if horizon.due_at_s <= now_s:
            out.horizons[sandbox] = horizon
    return out


def _ms(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC)


def _s(epoch_s: int) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


def _forged(key: bytes, key_id: str, used_key: Any, mac: Any, expected: bytes) -> bool:
    given = mac if isinstance(mac, bytes) else str(mac).encode("latin-1")
    return (bool(key_id) and used_key != key_id) or not hmac.compare_digest(given, expected)
