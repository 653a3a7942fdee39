"""``auditpipe config [--reference]``: the effective configuration, or every setting's
reference (the README table is generated from it)."""

from __future__ import annotations

import argparse
from typing import Any

import yaml

from pipeline.commands.base import EXIT_OK
from pipeline.config import Settings


def add_parser(sub: Any) -> None:
    config = sub.add_parser("config", help="print the effective configuration as YAML")
    config.add_argument(
        "--reference",
        action="store_true",
        help="print the reference of every setting (Markdown) instead",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.reference:
        from pipeline.config import reference_table

        print(reference_table())
    else:
        print(yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False), end="")
    return EXIT_OK
