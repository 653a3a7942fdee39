"""The items of each sandbox's hash chain as ClickHouse SQL, shared by ``verify`` and the
sealer (``pipeline/chain/seals.py``).

A chain *item* is anything that holds a place in a sandbox's chain: a stored row, a
repeat the collapse stage folded into a stored row, or the link of an event the level
policy kept back (``chain_links``). A *cover* stands for a range of items that retention
removed: a seal (``chain_seals``, seqs ``first_seq..last_seq``) or the sandbox's
horizon (``chain_horizons``, everything up to ``seq``). Every item has the columns

    tenant, sandbox_id, lo, seq, ts, ingested_at, h, p, expire_at, is_cover, cover_to

``lo..seq`` is the range of seqs it stands for (``lo = seq`` for an item), ``h`` and
``p`` its hash and the prev_hash it links to (hex), ``expire_at`` when retention removes
it. :func:`uncovered` drops every item that a cover before it spans, in one window pass
(seals never overlap: the sealer seals only what no cover spans yet).
"""

from __future__ import annotations

from pipeline.chain.retention import expiry_sql, ttl_seconds
from pipeline.config import RetentionConfig

GENESIS_HEX = "00" * 32


def _ns(expr: str) -> str:
    """A canonical value: <byte length>:<bytes>."""
    return f"concat(toString(length({expr})), ':', {expr})"


def _ns_nullable(expr: str) -> str:
    return f"if(isNull({expr}), '~', {_ns(f'toString(assumeNotNull({expr}))')})"


CANONICAL_SQL = (
    "concat("
    + ", ".join(
        [
            _ns("event_id"),
            _ns("toString(toUnixTimestamp64Milli(ts))"),
            _ns("toString(tenant)"),
            _ns("sandbox_id"),
            _ns("toString(seq)"),
            _ns("toString(category)"),
            _ns("toString(action)"),
            _ns("toString(level)"),
            _ns("toString(outcome)"),
            _ns("toString(actor_user)"),
            _ns_nullable("actor_uid"),
            _ns_nullable("actor_pid"),
            _ns_nullable("actor_ppid"),
            _ns("toString(actor_process)"),
            _ns("actor_cmdline"),
            _ns("object"),
            _ns_nullable("bytes"),
            _ns("toString(length(attributes))"),
            "arrayStringConcat(arrayMap(k -> concat("
            + _ns("k")
            + ", "
            + _ns("attributes[k]")
            + "), arraySort(mapKeys(attributes))))",
            "if(actor_parent_process = '' AND actor_parent_cmdline = '', '', concat("
            + _ns("toString(actor_parent_process)")
            + ", "
            + _ns("actor_parent_cmdline")
            + "))",
        ]
    )
    + ")"
)
"""The chain's canonical encoding (``pipeline/chain/hashing.py``, version 2) rebuilt in
SQL: the parent's two values only when one is not empty."""

RECOMPUTED_SQL = f"hex(SHA256(concat(assumeNotNull(prev_hash), {CANONICAL_SQL})))"
"""What a stored row's content hashes to (hex)."""


def _and(where: str, clause: str) -> str:
    return f"{where} AND {clause}" if where else f"WHERE {clause}"


def items_sql(
    database: str,
    where: str,
    retention: RetentionConfig,
    *,
    recompute: bool = False,
    ts_before: str | None = None,
) -> str:
    """Rows, repeats and kept-back links of the chains ``where`` selects. With
    ``recompute``, ``recomputed`` is each row's content hash (else its stored hash);
    ``ts_before`` (an SQL DateTime) keeps only items older than it."""
    recomputed = RECOMPUTED_SQL if recompute else "hex(assumeNotNull(hash))"
    rows = _and(where, "hash IS NOT NULL")
    links = where
    if ts_before is not None:
        rows = _and(rows, f"toDateTime(ts) <= {ts_before}")
        links = _and(links, f"toDateTime(ts) <= {ts_before}")
    security = ttl_seconds(retention.security_days)
    return f"""
        SELECT tenant, sandbox_id, seq AS lo, seq, ts, ingested_at,
          hex(assumeNotNull(hash)) AS h, hex(assumeNotNull(prev_hash)) AS p,
          {recomputed} AS recomputed, {expiry_sql(retention)} AS expire_at,
          0 AS is_cover, toUInt64(0) AS cover_to
        FROM {database}.events {rows}
        UNION ALL
        SELECT tenant, sandbox_id, repeat.1 AS lo, repeat.1 AS seq, ts, ingested_at,
          hex(repeat.2) AS h, hex(repeat.3) AS p, h AS recomputed,
          {expiry_sql(retention)} AS expire_at, 0 AS is_cover, toUInt64(0) AS cover_to
        FROM {database}.events
        ARRAY JOIN arrayZip(repeat_seqs, repeat_hashes, repeat_prev_hashes) AS repeat
        {rows}
        UNION ALL
        SELECT tenant, sandbox_id, seq AS lo, seq, link_ts AS ts, first_in AS ingested_at,
          hex(hash) AS h, hex(prev) AS p, h AS recomputed,
          toDateTime(link_ts) + toIntervalSecond({security}) AS expire_at,
          0 AS is_cover, toUInt64(0) AS cover_to
        FROM (SELECT tenant, sandbox_id, seq, hash, any(ts) AS link_ts,
                min(ingested_at) AS first_in, any(prev_hash) AS prev
              FROM {database}.chain_links {links}
              GROUP BY tenant, sandbox_id, seq, hash)
    """


def covers_sql(database: str, where: str, *, due_only: bool, skip_forged: bool = False) -> str:
    """Seals and horizons of the chains ``where`` selects, as cover items. With
    ``due_only`` (verify), a seal counts only once its rows' expiry is due
    (``expires_from``) and a sandbox's horizon is its newest due one; without (the
    sealer), every seal and the newest horizon count, so nothing is sealed twice. With
    ``skip_forged``, the records listed in the query parameters ``forged_seals`` and
    ``forged_horizons`` (their signatures did not match) cover nothing."""
    seals = _and(where, "expires_from <= now()") if due_only else where
    horizons = _and(where, "due_at <= now()") if due_only else where
    if skip_forged:
        seals = _and(
            seals,
            "(tenant, sandbox_id, first_seq, last_seq, hex(hash)) NOT IN "
            "{forged_seals:Array(Tuple(String, String, UInt64, UInt64, String))}",
        )
        horizons = _and(
            horizons,
            "(tenant, sandbox_id, seq, hex(hash)) NOT IN "
            "{forged_horizons:Array(Tuple(String, String, UInt64, String))}",
        )
    return f"""
        SELECT tenant, sandbox_id, first_seq AS lo, last_seq AS seq, last_ts AS ts,
          sealed_at AS ingested_at, hex(hash) AS h, hex(prev_hash) AS p, h AS recomputed,
          keep_until AS expire_at, 1 AS is_cover, last_seq AS cover_to
        FROM {database}.chain_seals {seals}
        UNION ALL
        SELECT tenant, sandbox_id, 0 AS lo, argMax(h_seq, h_due) AS seq,
          toDateTime64(max(h_due), 3) AS ts, max(h_sealed) AS ingested_at,
          hex(argMax(h_hash, h_due)) AS h, '{GENESIS_HEX}' AS p, h AS recomputed,
          max(h_due) AS expire_at, 1 AS is_cover, seq AS cover_to
        FROM (SELECT tenant, sandbox_id, seq AS h_seq, hash AS h_hash, due_at AS h_due,
                sealed_at AS h_sealed
              FROM {database}.chain_horizons {horizons})
        GROUP BY tenant, sandbox_id
    """


def uncovered(items: str) -> str:
    """``items`` (items and covers) without what a cover spans: each item with the
    highest ``cover_to`` of the covers before it (by ``lo``; a cover first at equal
    ``lo``) at or past its ``seq`` is dropped, so is a cover inside the horizon."""
    return f"""
        SELECT * FROM (
          SELECT *, max(cover_to) OVER (
              PARTITION BY tenant, sandbox_id ORDER BY lo, is_cover DESC, seq
              ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS covered_to
          FROM ({items})
        ) WHERE covered_to < seq
    """
