"""``auditpipe verify``: recompute every sandbox's hash chain over the stored rows
(``pipeline/chain/verify.py``), check the signed checkpoints (``chain/checkpoints.py``)
and the retention seals (``chain/seals.py``); exit 1 on any finding, 3 when it cannot
check."""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from pipeline.commands.base import EXIT_OK, EXIT_PARTIAL, CannotCheck, since_ms
from pipeline.config import Settings


def add_parser(sub: Any) -> None:
    verify = sub.add_parser(
        "verify",
        help="recompute every sandbox's hash chain over the stored rows",
        description="Reports modified, deleted, inserted and relinked (reordered) events; "
        "exits 1 on any finding.",
    )
    verify.add_argument("--tenant")
    verify.add_argument("--sandbox")
    verify.add_argument(
        "--strict",
        action="store_true",
        help="rows without a chain in tenants of verify.chained_tenants are findings",
    )
    verify.add_argument(
        "--no-kafka-copy",
        action="store_true",
        help="do not compare the signed checkpoints with their copy on the checkpoints topic",
    )
    verify.add_argument("--since", help="report findings from then on (epoch ms or RFC 3339)")


def _retained(args: argparse.Namespace, settings: Settings) -> Any:
    """The seals and horizons of the chains checked, signatures verified (None when
    there are none and no key to check them)."""
    from pipeline.chain import seals
    from pipeline.chain.checkpoints import NoKey, load_key
    from pipeline.chain.verify import sandbox_filters
    from pipeline.outputs.clickhouse.client import connect

    client = connect(settings.clickhouse)
    database = settings.clickhouse.database
    try:
        key = load_key(settings, create=False)
    except NoKey as exc:
        stored = client.query(
            f"SELECT (SELECT count() FROM {database}.chain_seals) + "
            f"(SELECT count() FROM {database}.chain_horizons)"
        ).result_rows[0][0]
        if stored:
            raise CannotCheck(f"retention seals exist but cannot be checked: {exc}") from None
        return seals.Retained()
    where, params = sandbox_filters(args.tenant, args.sandbox)
    return seals.load(client, database, key, settings.checkpoints.key_id, where, params)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.chain.verify import Finding, verify
    from pipeline.outputs.clickhouse.client import connect

    since = since_ms(args.since)
    started = time.monotonic()
    retained = _retained(args, settings)
    report = verify(
        connect(settings.clickhouse),
        settings.clickhouse.database,
        tenant=args.tenant,
        sandbox=args.sandbox,
        since_ms=since,
        strict_tenants=settings.verify.chained_tenants if args.strict else None,
        retention=settings.retention,
        forged=retained,
    )
    report.findings += [Finding("forged", t, s, q, d) for t, s, q, d in retained.forged]
    checked, checkpoint_findings = _verify_checkpoints(args, settings, retained)
    elapsed = time.monotonic() - started
    for f in report.findings:
        print(f"{f.kind:<9} {f.tenant}/{f.sandbox_id} seq {f.seq}: {f.detail}")
    for c in checkpoint_findings:
        print(f"checkpoint {c.tenant}/{c.sandbox_id} seq {c.seq}: {c.detail}")
    print(
        f"verified {report.chained:,} chained events of {report.sandboxes:,} sandboxes in "
        f"{elapsed:.2f} s ({report.chained / max(elapsed, 1e-9):,.0f} events/s); "
        f"{report.unchained:,} without a chain; {report.redacted:,} masked at the edge "
        f"(content checked); {report.collapsed:,} collapsed repeats and {report.kept_back:,} "
        f"kept back by the level policy (links checked only); "
        f"{sum(len(v) for v in retained.seals.values()):,} retention seals; "
        f"{checked:,} signed checkpoints "
        f"checked; "
        f"{len(report.findings) + len(checkpoint_findings)} findings"
    )
    return EXIT_PARTIAL if report.findings or checkpoint_findings else EXIT_OK


def _verify_checkpoints(
    args: argparse.Namespace, settings: Settings, retained: Any
) -> tuple[int, list[Any]]:
    from pipeline.chain.checkpoint_check import (
        CheckpointFinding,
        database_has_checkpoints,
        read_checkpoint_copy,
        verify_checkpoints,
    )
    from pipeline.chain.checkpoints import NoKey, load_key
    from pipeline.outputs.clickhouse.client import connect

    client = connect(settings.clickhouse)
    database = settings.clickhouse.database
    if not database_has_checkpoints(client, database):
        # Created by the migrations: missing, it was dropped (with every signed head).
        missing = CheckpointFinding("-", "-", 0, f"{database}.chain_checkpoints is missing")
        return 0, [missing]
    try:
        key = load_key(settings, create=False)
    except NoKey as exc:
        if client.query(f"SELECT count() FROM {database}.chain_checkpoints").result_rows[0][0]:
            raise CannotCheck(f"signed checkpoints exist but cannot be checked: {exc}") from None
        return 0, []
    config = settings.checkpoints
    # Rows older than two intervals (and a minute of slack) must be signed by now.
    require = 2 * config.interval_s + 60 if config.enabled and settings.rules.integrity else None
    report = verify_checkpoints(
        client,
        database,
        key,
        config.key_id,
        tenant=args.tenant,
        sandbox=args.sandbox,
        require_after_s=require,
        retained=retained,
        kafka_copy=None if args.no_kafka_copy else asyncio.run(read_checkpoint_copy(settings)),
    )
    return report.checked, report.findings
