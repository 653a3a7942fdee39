"""``auditpipe config [--reference]``: the effective configuration, or every setting's
reference (the README table is generated from it). Secrets are never printed: fields
typed as secrets show as ``**********``, and a password in a URL as ``****``."""

from __future__ import annotations

import argparse
import re
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
        # SecretStr fields dump as "**********"; a password inside a URL is masked too.
        text = yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False)
        print(_URL_PASSWORD.sub(r"\1****@", text), end="")
    return EXIT_OK


_URL_PASSWORD = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@")
