"""``auditpipe``: the command line.

Exit status: 0 success; 1 done, but some input was rejected or a check failed;
2 bad usage or configuration; 3 a service is unavailable.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from typing import Any

import yaml

from pipeline.config import ConfigError, Settings, load_settings
from pipeline.scenarios import SCENARIOS

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3
MAX_LINE_ERRORS_SHOWN = 100


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="auditpipe",
        description="Stream-processing pipeline for sandbox audit logs: "
        "collectors -> Kafka -> Faust worker -> ClickHouse.",
    )
    parser.add_argument(
        "--config", metavar="FILE", help="YAML configuration file (default: $AUDITPIPE_CONFIG)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    stack = sub.add_parser("stack", help="run the embedded local Kafka + ClickHouse (no Docker)")
    stack.add_argument("action", choices=("up", "down", "status"))

    init = sub.add_parser("init", help="create the Kafka topics and ClickHouse tables (idempotent)")
    init.add_argument("--partitions", type=int, help="partitions per topic (default 6)")

    publish = sub.add_parser("publish", help="publish JSON-lines events from FILE or - (stdin)")
    publish.add_argument("file", metavar="FILE|-")

    collect = sub.add_parser(
        "collect",
        help="collect from a log source: chain, spool and deliver its events to Kafka",
        description="Read jsonl:PATH, auditd:PATH, falco:PATH or stdin[:FORMAT]; with "
        "--follow keep reading as the file grows (rotation and truncation handled). A "
        "restart resumes where the last commit left off: every line is published once.",
    )
    collect.add_argument(
        "--source", required=True, help="jsonl:PATH, auditd:PATH, falco:PATH, stdin[:FORMAT]"
    )
    collect.add_argument("--follow", action="store_true", help="keep reading as the file grows")
    collect.add_argument("--name", help="collector name: its spool folder (default: file name)")

    inventory = sub.add_parser("inventory", help="write the sandbox inventory (audit.sandboxes)")
    inv = inventory.add_subparsers(dest="inventory_command", required=True, metavar="ACTION")
    put = inv.add_parser("put", help="add or replace one sandbox")
    put.add_argument("--sandbox-id", required=True)
    put.add_argument("--tenant", required=True)
    put.add_argument("--owner", default="")
    put.add_argument("--environment", default="", help="dev, staging, prod-replica, ...")
    put.add_argument("--image", default="")
    put.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    put.add_argument("--created-at", help="epoch ms or RFC 3339 (default: now)")
    load = inv.add_parser("load", help="add or replace the sandboxes of a JSON-lines file")
    load.add_argument("file", metavar="FILE|-")

    deadletter = sub.add_parser("deadletter", help="list dead letters, or replay them after a fix")
    dl = deadletter.add_subparsers(dest="deadletter_command", required=True, metavar="ACTION")
    dl.add_parser("list", help="dead letters by reason")
    again = dl.add_parser("replay", help="send dead letters through the pipeline again")
    again.add_argument(
        "--reason", action="append", default=[], help="only this reason (repeatable)"
    )
    again.add_argument("--since", help="only dead letters from then on (epoch ms or RFC 3339)")
    again.add_argument("--again", action="store_true", help="include ones already replayed")
    again.add_argument("--dry-run", action="store_true", help="count, send nothing")

    retention = sub.add_parser(
        "retention",
        help="show or apply how long rows are kept (TTL); seal what is about to expire",
        description="show: the configured periods and each table's TTL. apply: set the "
        "TTLs. seal: sign the chain ranges expiring within --margin-hours (and advance each "
        "sandbox's horizon), so `verify` tells expiry from deletion; run it hourly.",
    )
    retention.add_argument("action", choices=("show", "apply", "seal"))
    retention.add_argument(
        "--margin-hours",
        type=float,
        default=24.0,
        help="seal: what expires within this many hours (default 24; more than the "
        "interval between runs)",
    )

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

    worker = sub.add_parser("worker", help="run the Faust worker (Kafka -> stages -> ClickHouse)")
    worker.add_argument("--loglevel", default="info", choices=("debug", "info", "warning", "error"))

    simulate = sub.add_parser("simulate", help="publish the events of a simulated fleet")
    _simulation_args(simulate, sandboxes=50, rate=5000, duration=10)
    simulate.add_argument(
        "--events",
        type=int,
        default=0,
        help="publish exactly this many events as fast as possible (overrides --rate/--duration)",
    )

    run = sub.add_parser(
        "run",
        help="the main job: stack up, init, worker, a simulated fleet, "
        "live progress, then example analyst queries",
    )
    _simulation_args(run, sandboxes=50, rate=5000, duration=20)
    run.add_argument(
        "--benign",
        action="store_true",
        help="inject no attack (by default every scenario is injected once, to show alerts)",
    )

    from pipeline.rules.cli import add_parser as add_rules_parser

    add_rules_parser(sub)

    alerts = sub.add_parser("alerts", help="consume the alerts topic (the SIEM/SOAR example)")
    alert_actions = alerts.add_subparsers(dest="alerts_command", required=True, metavar="ACTION")
    tail = alert_actions.add_parser("tail", help="print alerts as they arrive")
    tail.add_argument(
        "--severity",
        default="low",
        choices=("low", "medium", "high", "critical"),
        help="only this severity and above (%(default)s)",
    )
    tail.add_argument("--json", action="store_true", help="one JSON object per line")
    tail.add_argument("--topic", help="read this topic (a severity route) instead of the main one")
    tail.add_argument("--group", help="consumer group: commit and resume where it stopped")
    tail.add_argument("--from-beginning", action="store_true", help="start at the oldest alert")
    tail.add_argument("--limit", type=int, default=0, help="stop after this many alerts")
    tail.add_argument(
        "--idle-timeout", type=float, default=0.0, help="stop after this many quiet seconds"
    )

    config = sub.add_parser("config", help="print the effective configuration as YAML")
    config.add_argument(
        "--reference",
        action="store_true",
        help="print the reference of every setting (Markdown) instead",
    )
    return parser


def _simulation_args(
    p: argparse.ArgumentParser, *, sandboxes: int, rate: float, duration: float
) -> None:
    p.add_argument("--sandboxes", type=int, default=sandboxes, help="fleet size (%(default)s)")
    p.add_argument("--tenants", type=int, default=3, help="tenants of the fleet (%(default)s)")
    p.add_argument(
        "--rate",
        type=float,
        default=rate,
        help="events per second, whole fleet (%(default)s; 0 = as fast as possible)",
    )
    p.add_argument("--duration", type=float, default=duration, help="seconds (%(default)s)")
    p.add_argument("--seed", type=int, default=None, help="random seed (reproducible fleet)")
    p.add_argument(
        "--scenario",
        action="append",
        default=[],
        choices=sorted(SCENARIOS),
        metavar="NAME",
        help="inject an attack scenario (repeatable): " + ", ".join(sorted(SCENARIOS)),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"auditpipe: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from pipeline.runtime import tune_gc
    from pipeline.stack import StackError

    tune_gc()
    try:
        return _dispatch(args, settings)
    except (StackError, CannotCheck) as exc:
        print(f"auditpipe: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except (UsageError, ConfigError) as exc:
        print(f"auditpipe: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # last: a service that did not answer, else a bug
        unavailable = _unavailable(exc, settings)
        if unavailable is None:
            raise
        print(f"auditpipe: {unavailable}", file=sys.stderr)
        return EXIT_UNAVAILABLE


class CannotCheck(Exception):
    """A check could not be done (not a finding): exit status 3, one line."""


def _unavailable(exc: BaseException, settings: Settings) -> str | None:
    """One line naming the service that did not answer and the address tried, or None
    when ``exc`` is not such a failure (then it is a bug, and its traceback is shown)."""
    from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
    from clickhouse_connect.driver.exceptions import OperationalError

    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    if isinstance(exc, OperationalError):
        return f"ClickHouse at {settings.clickhouse.url} did not answer: {first}"
    if isinstance(exc, KafkaConnectionError | KafkaTimeoutError):
        return f"Kafka at {settings.kafka.bootstrap} did not answer: {first}"
    if isinstance(exc, ConnectionError | TimeoutError):
        return f"a service did not answer ({type(exc).__name__}): {first}"
    return None


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    command: str = args.command
    if command == "config":
        if args.reference:
            from pipeline.config import reference_table

            print(reference_table())
        else:
            print(yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False), end="")
        return EXIT_OK
    if command == "stack":
        return _stack(args.action, settings)
    if command == "init":
        if args.partitions:
            settings.kafka.partitions = args.partitions
        return _init(settings)
    if command == "publish":
        return _publish(args.file, settings)
    if command == "collect":
        from pipeline.collect.run import main_collect

        try:
            return main_collect(settings, args.source, follow=args.follow, name=args.name)
        except ValueError as exc:
            print(f"auditpipe: {exc}", file=sys.stderr)
            return EXIT_USAGE
    if command == "retention":
        return _retention(args, settings)
    if command == "verify":
        return _verify(args, settings)
    if command == "deadletter":
        return _deadletter(args, settings)
    if command == "inventory":
        return _inventory(args, settings)
    if command == "worker":
        from pipeline.worker import run_worker

        run_worker(settings, loglevel=args.loglevel)
        return EXIT_OK
    if command == "simulate":
        return _simulate(args, settings)
    if command == "rules":
        from pipeline.rules import cli as rules_cli

        return rules_cli.run(args, settings)
    if command == "alerts":
        from pipeline.alerts_tail import run_tail

        return run_tail(
            settings,
            severity=args.severity,
            as_json=args.json,
            group=args.group,
            from_beginning=args.from_beginning,
            limit=args.limit,
            idle_timeout_s=args.idle_timeout,
            topic=args.topic,
        )
    if command == "run":
        from pipeline.run import run_main_job

        return run_main_job(
            settings,
            sandboxes=args.sandboxes,
            tenants=args.tenants,
            rate=args.rate,
            duration_s=args.duration,
            seed=args.seed,
            scenarios=args.scenario or ([] if args.benign else sorted(SCENARIOS)),
        )
    raise AssertionError(command)


def _stack(action: str, settings: Settings) -> int:
    from pipeline.stack import LocalStack

    stack = LocalStack(settings)
    if action == "up":
        stack.up()
    elif action == "down":
        stack.down()
    else:
        rows = stack.status()
        for status in rows:
            state = "running" if status.pid else "stopped"
            answer = "answering" if status.answering else "not answering"
            print(
                f"{status.name:<11} {state:<8} pid={status.pid or '-':<8} "
                f"{status.endpoint:<24} {answer}"
            )
        return EXIT_OK if all(s.answering for s in rows) else EXIT_UNAVAILABLE
    return EXIT_OK


def _init(settings: Settings) -> int:
    from pipeline.chclient import connect
    from pipeline.provision import apply_migrations, create_topics, load_migrations

    created = asyncio.run(create_topics(settings))
    print(f"kafka: topics created: {', '.join(created) or 'none (all exist)'}")
    client = connect(settings.clickhouse)
    applied = apply_migrations(client, settings.clickhouse.database, load_migrations())
    print(f"clickhouse: migrations applied: {', '.join(applied) or 'none (up to date)'}")
    return EXIT_OK


def _publish(path: str, settings: Settings) -> int:
    from pipeline.publish import LineError, publish_json_lines, read_lines
    from pipeline.schema import codec_for

    shown = 0

    def report(error: LineError) -> None:
        nonlocal shown
        shown += 1
        if shown <= MAX_LINE_ERRORS_SHOWN:
            print(f"{path}:{error.line}: {error.message}", file=sys.stderr)

    try:
        lines = read_lines(path)
        codec = codec_for(settings)
        stats = asyncio.run(publish_json_lines(settings, codec, lines, report))
    except FileNotFoundError:
        print(f"auditpipe: {path}: no such file", file=sys.stderr)
        return EXIT_USAGE
    if shown > MAX_LINE_ERRORS_SHOWN:
        print(f"... and {shown - MAX_LINE_ERRORS_SHOWN} more bad lines", file=sys.stderr)
    print(
        f"published {stats.events} events in {stats.messages} messages "
        f"({stats.rate():,.0f} events/s); rejected {stats.rejected} bad lines"
    )
    return EXIT_PARTIAL if stats.rejected else EXIT_OK


class UsageError(Exception):
    """Words on the command line that cannot be used; main prints them and exits 2."""


def _since(text: str | None) -> int | None:
    """--since as epoch ms, None when not given."""
    from pipeline.schema.event import InvalidEvent, parse_ts

    if text is None:
        return None
    try:
        return parse_ts(int(text) if text.isdigit() else text)
    except InvalidEvent as exc:
        raise UsageError(f"--since: {exc.problem}") from None


def _retention(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline import retention
    from pipeline.chclient import connect

    client = connect(settings.clickhouse)
    database = settings.clickhouse.database
    config = settings.retention
    if args.action == "seal":
        return _seal(args, settings)
    if args.action == "apply":
        changed = retention.apply(client, database, config)
        print(f"retention applied to {', '.join(changed)}")
    print(
        f"configured: debug {config.debug_days:g} d, info {config.info_days:g} d, "
        f"security-relevant {config.security_days:g} d, dead letters "
        f"{config.deadletter_days:g} d, alerts {config.alerts_days:g} d, rollups "
        f"{config.rollup_days:g} d"
    )
    for table, ttl in retention.current(client, database).items():
        print(f"{database}.{table}: TTL {ttl or '(none)'}")
    return EXIT_OK


def _seal(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline import seals
    from pipeline.chclient import connect
    from pipeline.checkpoints import NoKey, load_key

    if args.margin_hours <= 0:
        raise UsageError("--margin-hours must be positive")
    try:
        key = load_key(settings, create=False)
    except NoKey as exc:
        raise UsageError(f"cannot seal: {exc} (the key `verify` checks seals with)") from None
    started = time.monotonic()
    report = seals.seal(
        connect(settings.clickhouse),
        settings.clickhouse.database,
        settings.retention,
        key,
        settings.checkpoints.key_id,
        margin_s=args.margin_hours * 3600,
    )
    print(
        f"sealed {report.items:,} chain items expiring within {args.margin_hours:g} h in "
        f"{report.seals:,} seals; {report.horizons:,} sandbox horizons advanced "
        f"({time.monotonic() - started:.2f} s)"
    )
    return EXIT_OK


def _retained(args: argparse.Namespace, settings: Settings) -> Any:
    """The seals and horizons of the chains checked, signatures verified (None when
    there are none and no key to check them)."""
    from pipeline import seals
    from pipeline.chclient import connect
    from pipeline.checkpoints import NoKey, load_key
    from pipeline.verify import sandbox_filters

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


def _verify(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.chclient import connect
    from pipeline.verify import Finding, verify

    since = _since(args.since)
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
    from pipeline.chclient import connect
    from pipeline.checkpoints import (
        CheckpointFinding,
        NoKey,
        database_has_checkpoints,
        load_key,
        read_checkpoint_copy,
        verify_checkpoints,
    )

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


def _deadletter(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline import replay
    from pipeline.chclient import connect

    client = connect(settings.clickhouse)
    database = settings.clickhouse.database
    if args.deadletter_command == "list":
        for reason, count, first, last in replay.summary(client, database):
            print(f"{reason:<20} {count:>10}  {first} .. {last}")
        return EXIT_OK
    since = _since(args.since)
    rows = replay.select(client, database, reasons=args.reason, since_ms=since, again=args.again)
    if args.dry_run:
        print(f"would replay {len(rows)} dead letters")
        return EXIT_OK
    report = asyncio.run(replay.replay(settings, client, rows))
    print(
        f"replayed {report.events} events and {report.messages} messages; "
        f"{report.unusable} not usable"
    )
    return EXIT_PARTIAL if report.unusable else EXIT_OK


def _inventory(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.inventory import parse_record, put_records, read_records
    from pipeline.publish import read_lines
    from pipeline.schema import codec_for
    from pipeline.schema.event import InvalidEvent

    if args.inventory_command == "put":
        labels = dict(label.split("=", 1) for label in args.label if "=" in label)
        if len(labels) != len(args.label):
            print("auditpipe: --label takes KEY=VALUE", file=sys.stderr)
            return EXIT_USAGE
        raw = {
            "sandbox_id": args.sandbox_id,
            "tenant": args.tenant,
            "owner": args.owner,
            "environment": args.environment,
            "image": args.image,
            "labels": labels,
        }
        if args.created_at:
            raw["created_at"] = (
                int(args.created_at) if args.created_at.isdigit() else args.created_at
            )
        try:
            records, errors = [parse_record(raw)], list[str]()
        except InvalidEvent as exc:
            print(f"auditpipe: {exc}", file=sys.stderr)
            return EXIT_USAGE
    else:
        try:
            records, errors = read_records(read_lines(args.file))
        except FileNotFoundError:
            print(f"auditpipe: {args.file}: no such file", file=sys.stderr)
            return EXIT_USAGE
    for error in errors:
        print(f"{getattr(args, 'file', '')}: {error}", file=sys.stderr)
    sent = asyncio.run(put_records(settings, codec_for(settings), records))
    print(
        f"inventory: {sent} sandboxes written to {settings.kafka.topic_sandboxes}; "
        f"{len(errors)} bad lines"
    )
    return EXIT_PARTIAL if errors else EXIT_OK


def _simulate(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.publish import EventPublisher
    from pipeline.schema import codec_for
    from pipeline.simulate import FleetSimulator, run_paced

    sim = FleetSimulator(args.sandboxes, tenants=args.tenants, seed=args.seed)
    codec = codec_for(settings)

    async def go() -> int:
        async with EventPublisher(settings, codec, client_id="simulate") as publisher:
            if args.events:
                await publisher.add_many(sim.events(args.events, scenarios=args.scenario))
            else:
                await run_paced(
                    sim,
                    publisher.add,
                    rate=args.rate,
                    duration_s=args.duration,
                    scenarios=args.scenario,
                )
        print(
            f"simulated {args.sandboxes} sandboxes (run {sim.run_id}): published "
            f"{publisher.stats.events} events in {publisher.stats.messages} messages "
            f"({publisher.stats.rate():,.0f} events/s)"
        )
        return EXIT_OK

    return asyncio.run(go())


if __name__ == "__main__":
    sys.exit(main())
