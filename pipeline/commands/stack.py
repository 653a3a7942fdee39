"""``auditpipe stack up|down|status``: the embedded local Kafka and ClickHouse."""

from __future__ import annotations

import argparse
from typing import Any

from pipeline.commands.base import EXIT_OK, EXIT_UNAVAILABLE
from pipeline.config import Settings


def add_parser(sub: Any) -> None:
    stack = sub.add_parser("stack", help="run the embedded local Kafka + ClickHouse (no Docker)")
    stack.add_argument("action", choices=("up", "down", "status"))
    stack.add_argument(
        "--secure",
        action="store_true",
        help="up: run secured (Kafka SASL_SSL + mutual TLS, ClickHouse HTTPS, a private CA "
        "under $AUDITPIPE_HOME/tls); prints the client settings to use",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.stack import LocalStack

    if args.secure:
        settings.stack.secure = True
    stack = LocalStack(settings)
    if args.action == "up":
        stack.up()
    elif args.action == "down":
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
