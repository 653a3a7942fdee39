"""``auditpipe verify``: recompute every sandbox's hash chain over the stored rows.

The chain's canonical encoding (``pipeline/chain/hashing.py``) is rebuilt in ClickHouse
SQL, so the check runs inside the database over all rows at once. Findings:

* ``modified``: a row's content no longer hashes to its ``hash`` (a changed field, or
  a changed ``seq``, as when two rows' seqs are swapped);
* ``relinked``: a row's ``prev_hash`` is not the previous row's ``hash`` (a row removed,
  inserted or moved before it);
* ``deleted``: ``seq`` numbers missing between two rows;
* ``inserted``: more than one row with the same ``seq``;
* ``unchained`` (with ``strict_tenants``, ``verify --strict``): rows without a chain in
  tenants whose events must all be chained (``verify.chained_tenants``).

Ranges that retention removed are followed through their signed seals, and a sandbox's
chain starts at its horizon once its early history expired (``pipeline/chain/seals.py``): a
seal counts only once its expiry is due, and a forged one (checked by the caller with the
key: ``seals.load``) covers nothing.

Rows without a chain (``hash`` null: events from ``publish``) are counted, not checked.
No attribute exempts a chained row: secrets are masked at the collector *before* an
event is sealed (``pipeline/redaction.py``), so a masked row's content hashes like any
other, and the worker never changes a chained event (it dead-letters one that still holds
a secret). Rows masked at the edge (``attributes['auditpipe.redacted']``) are counted as
``redacted`` for information only. (Rows a worker before this version masked after
sealing are reported as ``modified``: limit such a run with ``--since``.) Repeats the collapse stage
folded into a stored row (``repeat_seqs``, ``repeat_hashes``, ``repeat_prev_hashes``)
take their place in the chain by seq and hashes, without content to recompute; they are
counted as ``collapsed``. So do the links of chained events the level policy kept back
(``audit.chain_links``), counted as ``kept_back``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from clickhouse_connect.driver.client import Client

from pipeline.chain.items import (
    GENESIS_HEX,
    RECOMPUTED_SQL,
    covers_sql,
    items_sql,
    uncovered,
)
from pipeline.chain.seals import Retained
from pipeline.config import RetentionConfig


@dataclass
class Finding:
    kind: str
    tenant: str
    sandbox_id: str
    seq: int
    detail: str


@dataclass
class VerifyReport:
    rows: int = 0
    chained: int = 0
    unchained: int = 0
    redacted: int = 0
    collapsed: int = 0
    kept_back: int = 0
    sandboxes: int = 0
    findings: list[Finding] = field(default_factory=list)


def verify(
    client: Client,
    database: str,
    *,
    tenant: str | None = None,
    sandbox: str | None = None,
    since_ms: int | None = None,
    limit: int = 10_000,
    strict_tenants: list[str] | None = None,
    retention: RetentionConfig | None = None,
    covers: bool = True,
    forged: Retained | None = None,
) -> VerifyReport:
    """Findings in the chains ``tenant``/``sandbox`` select. With ``covers``, the gaps
    retention left are followed through the seals and horizons whose expiry is due
    (``pipeline/chain/seals.py``; their signatures are checked by :func:`pipeline.chain.seals.load`,
    whose result, given as ``forged``, keeps the forged ones from covering anything)."""
    where, params = sandbox_filters(tenant, sandbox)
    report = VerifyReport()
    totals = client.query(
        f"SELECT count(), countIf(hash IS NOT NULL), countIf(hash IS NULL), "
        f"countIf(hash IS NOT NULL AND mapContains(attributes, 'auditpipe.redacted')), "
        f"sum(length(repeat_seqs)), uniqExact(tenant, sandbox_id) FROM {database}.events {where}",
        parameters=params,
    ).result_rows[0]
    (
        report.rows,
        report.chained,
        report.unchained,
        report.redacted,
        report.collapsed,
        report.sandboxes,
    ) = (int(v) for v in totals)
    report.kept_back = int(
        client.query(
            f"SELECT uniqExact(tenant, sandbox_id, seq, hash) FROM {database}.chain_links {where}",
            parameters=params,
        ).result_rows[0][0]
    )
    since_filter = ""
    if since_ms is not None:
        since_filter = "AND ts >= fromUnixTimestamp64Milli({since:Int64})"
        params["since"] = since_ms
    chained_where = f"{where} {'AND' if where else 'WHERE'} hash IS NOT NULL"
    modified = f"""
    SELECT 'modified', tenant, sandbox_id, seq,
      concat('stored hash ', left(h, 16), '..., content hashes to ', left(recomputed, 16), '...')
    FROM (SELECT tenant, sandbox_id, seq, ts, hex(assumeNotNull(hash)) AS h,
            {RECOMPUTED_SQL} AS recomputed
          FROM {database}.events {chained_where})
    WHERE recomputed != h {since_filter}
    ORDER BY tenant, sandbox_id, seq
    LIMIT {int(limit)}
    """
    items = items_sql(database, where, retention or RetentionConfig())
    if covers:
        items += " UNION ALL " + covers_sql(database, where, due_only=True, skip_forged=True)
        params["forged_seals"] = forged.forged_seals if forged else []
        params["forged_horizons"] = forged.forged_horizons if forged else []
    sql = f"""
    SELECT kind, tenant, sandbox_id, lo, detail FROM (
      SELECT tenant, sandbox_id, lo, seq, ts, h, p,
        lagInFrame(h, 1, '{GENESIS_HEX}') OVER w AS previous_hash,
        lagInFrame(seq, 1, 0) OVER w AS previous_seq,
        count() OVER (PARTITION BY tenant, sandbox_id, seq) AS same_seq
      FROM ({uncovered(items)})
      WINDOW w AS (PARTITION BY tenant, sandbox_id ORDER BY seq, ingested_at
                   ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
    )
    ARRAY JOIN [
      if(p != previous_hash, 'relinked', ''),
      if(lo > previous_seq + 1, 'deleted', ''),
      if(same_seq > 1 AND seq = previous_seq, 'inserted', '')
    ] AS kind,
    [
      concat('prev_hash ', left(p, 16), '..., the previous row has ',
             left(previous_hash, 16), '...'),
      concat('seq ', toString(previous_seq + 1), '..', toString(lo - 1), ' missing'),
      concat(toString(same_seq), ' rows with seq ', toString(seq))
    ] AS detail
    WHERE kind != '' {since_filter}
    ORDER BY tenant, sandbox_id, seq, kind
    LIMIT {int(limit)}
    """
    rows: list[Any] = list(client.query(modified, parameters=params).result_rows)
    rows += client.query(sql, parameters=params).result_rows
    rows.sort(key=lambda r: (r[1], r[2], int(r[3]), r[0]))
    report.findings = [Finding(kind, str(t), s, int(q), d) for kind, t, s, q, d in rows[:limit]]
    if strict_tenants is not None:
        report.findings.extend(_unchained(client, database, where, params, strict_tenants))
    return report


def _unchained(
    client: Client, database: str, where: str, params: dict[str, Any], tenants: list[str]
) -> list[Finding]:
    """Rows without a chain in tenants whose events must all be chained (``--strict``):
    rows that did not come through a collector (an insert with a stolen credential)."""
    clauses = [where[len("WHERE ") :]] if where else []
    clauses.append("hash IS NULL")
    if "*" not in tenants:
        clauses.append("tenant IN {strict_tenants:Array(String)}")
        params = {**params, "strict_tenants": tenants}
    rows = client.query(
        f"SELECT tenant, sandbox_id, min(seq), count(), any(event_id) FROM {database}.events "
        f"WHERE {' AND '.join(clauses)} GROUP BY tenant, sandbox_id ORDER BY 1, 2 LIMIT 1000",
        parameters=params,
    ).result_rows
    return [
        Finding("unchained", str(t), str(s), int(seq), f"{n} rows without a chain (e.g. {e})")
        for t, s, seq, n, e in rows
    ]


def sandbox_filters(
    tenant: str | None, sandbox: str | None, alias: str = ""
) -> tuple[str, dict[str, Any]]:
    """A WHERE clause (or "") for --tenant/--sandbox, and its query parameters."""
    clauses, params = [], {}
    if tenant:
        clauses.append(f"{alias}tenant = {{tenant:String}}")
        params["tenant"] = tenant
    if sandbox:
        clauses.append(f"{alias}sandbox_id = {{sandbox:String}}")
        params["sandbox"] = sandbox
    return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), params
