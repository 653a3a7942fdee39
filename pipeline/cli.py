"""``auditpipe``: the command line.

Each command is a module of ``pipeline/commands`` with ``add_parser(sub)`` and
``run(args, settings) -> exit status``; this module only builds the parser from them and
turns errors into the exit statuses of ``pipeline/commands/base.py``: 0 success; 1 done,
but some input was rejected or a check found something; 2 bad usage or configuration;
3 a service is unavailable. A service that does not answer gives one line naming it and
the address tried, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from pipeline.commands import (
    alerts,
    collect,
    deadletter,
    export,
    forward,
    hunt,
    init,
    inventory,
    publish,
    retention,
    rules,
    run,
    simulate,
    stack,
    verify,
    worker,
)
from pipeline.commands import config as config_command
from pipeline.commands.base import (
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    CannotCheck,
    UsageError,
)
from pipeline.config import ConfigError, Settings, load_settings

COMMANDS: dict[str, ModuleType] = {
    "stack": stack,
    "init": init,
    "publish": publish,
    "collect": collect,
    "inventory": inventory,
    "deadletter": deadletter,
    "retention": retention,
    "verify": verify,
    "worker": worker,
    "simulate": simulate,
    "run": run,
    "rules": rules,
    "alerts": alerts,
    "forward": forward,
    "export": export,
    "hunt": hunt,
    "config": config_command,
}
"""Command name -> its module, in the order ``--help`` lists them."""

CONFIG_HELP = "YAML configuration file (default: $AUDITPIPE_CONFIG)"


class _WithConfig:
    """The subparsers action, giving every command ``--config`` too, so it may come
    before or after the command's name."""

    def __init__(self, sub: Any, common: argparse.ArgumentParser) -> None:
        self.sub, self.common = sub, common

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return self.sub.add_parser(name, parents=[self.common], **kwargs)  # type: ignore[no-any-return]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="auditpipe",
        description="Stream-processing pipeline for sandbox audit logs: "
        "collectors -> Kafka -> Faust worker -> ClickHouse.",
    )
    parser.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", help=CONFIG_HELP, default=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS.values():
        module.add_parser(_WithConfig(sub, common))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The clients log each failed connection; unless a command sets logging up (the
    # worker), Python's last-resort handler would print them before our one line.
    for name in ("aiokafka", "clickhouse_connect"):
        logging.getLogger(name).addHandler(logging.NullHandler())
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"auditpipe: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from pipeline.outputs.clickhouse.healthcheck import NotReady
    from pipeline.stack import StackError
    from pipeline.worker.runtime import tune_gc

    tune_gc()
    try:
        return int(COMMANDS[args.command].run(args, settings))
    except (StackError, CannotCheck, NotReady) as exc:
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


def _unavailable(exc: BaseException, settings: Settings) -> str | None:
    """One line naming the service that did not answer and the address tried, or None
    when ``exc`` is not such a failure (then it is a bug, and its traceback is shown)."""
    from aiokafka.errors import (
        ClusterAuthorizationFailedError,
        GroupAuthorizationFailedError,
        KafkaConnectionError,
        KafkaTimeoutError,
        TopicAuthorizationFailedError,
    )
    from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    if isinstance(exc, OperationalError | DatabaseError):
        return _clickhouse_cause(exc, settings, first)
    if isinstance(exc, KafkaConnectionError | KafkaTimeoutError):
        return _kafka_cause(settings, first)
    denied = (
        TopicAuthorizationFailedError,
        GroupAuthorizationFailedError,
        ClusterAuthorizationFailedError,
    )
    if isinstance(exc, denied):
        return f"Kafka at {settings.kafka.bootstrap} refused: {first} (missing ACL)"
    from pipeline.outputs.kafka import KafkaRefused

    if isinstance(exc, KafkaRefused):
        return str(exc)
    from pipeline.schema.confluent import RegistryError

    if isinstance(exc, RegistryError):
        return (
            f"the schema registry at {settings.kafka.schema_registry_url} did not answer: {first}"
        )
    if isinstance(exc, ConnectionError | TimeoutError):
        return f"a service did not answer ({type(exc).__name__}): {first}"
    return None


def _clickhouse_cause(exc: Exception, settings: Settings, first: str) -> str | None:
    """One line for a ClickHouse that did not answer or refused us; None for any other
    error of a query (a bug, shown with its traceback)."""
    from clickhouse_connect.driver.exceptions import OperationalError

    clickhouse = settings.clickhouse
    text = str(exc)
    where = f"ClickHouse at {clickhouse.url}"
    if "CERTIFICATE_VERIFY_FAILED" in text:
        reason = text.split("certificate verify failed:", 1)[-1].split("(_ssl")[0].strip()
        return (
            f"{where}: its certificate is not trusted ({reason}): it is not signed by a CA "
            f"of {clickhouse.ca_file or 'the system trusted CAs'} (clickhouse.ca_file)"
        )
    if "AUTHENTICATION_FAILED" in text or "Code: 516" in text:
        return (
            f"{where} refused user {clickhouse.user!r}: authentication failed (wrong "
            "password, or a user that may not connect from here)"
        )
    if "ACCESS_DENIED" in text or "Code: 497" in text:
        denied = text.split("DB::Exception:", 1)[-1].split("(ACCESS_DENIED)")[0].strip()
        return f"{where} refused user {clickhouse.user!r}: {denied[:200]}"
    if "UNKNOWN_DATABASE" in text or "UNKNOWN_TABLE" in text:
        return (
            f"{where} has no database {clickhouse.database!r} or its tables: run "
            "`auditpipe init` first (or check clickhouse.database)"
        )
    if "SSLError" in text or "RemoteDisconnected" in text:
        hint = " (is clickhouse.url https?)" if clickhouse.url.startswith("http:") else ""
        return f"{where}: the connection failed ({first[:160]}){hint}"
    if not isinstance(exc, OperationalError):
        return None  # a query ClickHouse refused: a bug
    return f"{where} did not answer: {first}"


def _kafka_cause(settings: Settings, first: str) -> str:
    """Why Kafka did not take us, found by connecting once more on our own
    (``kafka_clients.explain``): aiokafka only says it could not bootstrap."""
    import asyncio

    from pipeline.kafka_clients import NOT_ANSWERING, explain

    try:
        cause = asyncio.run(explain(settings.kafka))
    except Exception:  # the explanation is a courtesy: never hide the failure
        cause = None
    if cause is None or any(words in cause for words in NOT_ANSWERING):
        return f"Kafka at {settings.kafka.bootstrap} did not answer: {cause or first}"
    return f"Kafka at {settings.kafka.bootstrap} refused us: {cause}"


if __name__ == "__main__":
    sys.exit(main())
