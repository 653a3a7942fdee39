"""``auditpipe hunt``: run rules (ours, or a Sigma file) over stored events: what would
have fired over the last month, for a rule written today (docs/hunting.md)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import yaml

from pipeline.commands.base import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, UsageError, time_range
from pipeline.config import Settings
from pipeline.rules.language import RuleError, load_rules, parse_rules, rule_files
from pipeline.rules.model import Rule


def add_parser(sub: Any) -> None:
    hunt = sub.add_parser(
        "hunt",
        help="run rules or Sigma rules over stored events (hunting over history)",
        description="Compiles each rule (single-event, threshold or sequence) to ClickHouse "
        "SQL and runs it over the stored events of the range; prints each hit as an alert "
        "tagged auditpipe.hunt. Without FILE, the rules in force.",
    )
    hunt.add_argument(
        "files",
        nargs="*",
        type=Path,
        metavar="FILE",
        help="rule files or dirs, or Sigma rule files (default: the rules in force)",
    )
    hunt.add_argument(
        "--since", required=True, help="from: epoch ms, RFC 3339, or ago (30d, 12h, 90m)"
    )
    hunt.add_argument("--until", help="to, excluded (same forms; default: now)")
    hunt.add_argument("--tenant", help="only this tenant's events")
    hunt.add_argument("--rule", action="append", default=[], metavar="ID", help="only this rule")
    hunt.add_argument("--json", action="store_true", help="one JSON object per hit")
    hunt.add_argument(
        "--store", action="store_true", help="also store the hits in the alerts table"
    )


def _is_sigma(data: Any) -> bool:
    documents = data if isinstance(data, list) else [data]
    return any(isinstance(d, dict) and ("detection" in d or "correlation" in d) for d in documents)


def _load(args: argparse.Namespace, settings: Settings) -> list[Rule]:
    """The rules to hunt with: those of the files given (the built-in pack's lists and
    macros usable by them), Sigma files converted, or else every rule in force."""
    from pipeline.rules.sigma_import import SigmaImportError, import_sigma

    if not args.files:
        chosen = load_rules(list(settings.rules.paths), builtin=settings.rules.builtin).enabled
    else:
        ours: list[Path] = []
        chosen = []
        for path in args.files:
            if not path.exists():
                raise UsageError(f"{path}: no such file or directory")
            text = path.read_text() if path.is_file() else None
            if text is not None and _is_sigma(list(yaml.safe_load_all(text))):
                try:
                    chosen += parse_rules({"rules": import_sigma(text)}, str(path)).rules
                except SigmaImportError as exc:
                    raise UsageError(f"{path}: {exc}") from None
            else:
                ours.append(path)
        if ours:
            files = {str(f) for f in rule_files(ours, builtin=False)}
            chosen += [r for r in load_rules(ours, builtin=True).rules if r.path in files]
    if args.rule:
        chosen = [r for r in chosen if r.id in set(args.rule)]
        if not chosen:
            raise UsageError(f"--rule: no rule {', '.join(args.rule)} among those loaded")
    return chosen


def run(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.commands.alerts import format_alert
    from pipeline.export.run import range_params
    from pipeline.hunt.run import hunt, store
    from pipeline.outputs.clickhouse.client import connect

    since, until = time_range(args.since, args.until)
    try:
        rules = _load(args, settings)
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"cannot read the rules: {str(exc).splitlines()[0]}") from None
    except RuleError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return EXIT_USAGE
    client = connect(settings.clickhouse)
    database = settings.clickhouse.database
    params = range_params(since, until, args.tenant)
    failed, hits, scanned, stored = 0, 0, 0, 0
    started = time.monotonic()
    for number, done in enumerate(hunt(client, database, rules, params), 1):
        if done.error:
            failed += 1
            print(f"not run: {done.error}", file=sys.stderr)
            continue
        for alert in done.alerts:
            record = {**alert.record(), "hunt": True}
            print(orjson.dumps(record).decode() if args.json else format_alert(record))
        hits += len(done.alerts)
        scanned += done.scanned
        if args.store:
            stored += store(client, database, done.alerts)
        print(
            f"[{number}/{len(rules)}] {done.rule.id}: {len(done.alerts)} hits, "
            f"{done.scanned:,} rows read in {done.seconds:.2f} s",
            file=sys.stderr,
            flush=True,
        )
    elapsed = time.monotonic() - started
    summary = (
        f"{len(rules) - failed} rules run, {hits} hits, {scanned:,} rows read in {elapsed:.1f} s"
    )
    if args.store:
        summary += f", {stored} stored"
    print(summary + (f"; {failed} rules not run" if failed else ""), file=sys.stderr)
    return EXIT_PARTIAL if failed else EXIT_OK
