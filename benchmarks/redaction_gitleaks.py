"""The redact rules on samples written by others: the example secrets in gitleaks' rules.

    python benchmarks/redaction_gitleaks.py /path/to/gitleaks [--show]

gitleaks (github.com/gitleaks/gitleaks) tests each of its rules with true positives
(``tps``: strings its rule must find) and false positives (``fps``: strings it must not),
in ``cmd/generate/config/rules/*.go``. This reads the literal ones (one string per line;
generated samples and concatenations are skipped) of the rules for the secret kinds the
redact rules cover, runs each through the redaction as a command line, and prints per
file how many were masked. Nothing of gitleaks is copied into auditpipe; a checkout is
read where it lies (no download here). ``--show`` lists the samples missed and the false
positives masked. A gitleaks false positive masked is not necessarily wrong for an audit
trail (``curl -u test:test``: a placeholder to gitleaks, a password to us).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config import RedactConfig
from pipeline.redaction import Redactor

FILES = [
    "anthropic",
    "aws",
    "azure",
    "curl",
    "gcp",
    "generic",
    "github",
    "gitlab",
    "hashicorp",
    "heroku",
    "huggingface",
    "jwt",
    "npm",
    "openai",
    "privatekey",
    "pypi",
    "slack",
    "stripe",
]
LITERAL = re.compile(
    r"""^\s*(?:[tf]ps\s*:?=\s*\[\]string\{)?\s*("(?:[^"\\]|\\.)*"|`[^`]*`)\s*,?\s*(//.*)?$"""
)
BLOCK = re.compile(
    r"(tps|fps)\s*:?=\s*(?:append\([a-z]+,\s*)?(?:\[\]string\{)?(.*?)"
    r"(?=\n\s*(?:tps|fps|return|r\.|//\s*validate|\}\n\}))",
    re.S,
)


def samples(source: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {"tps": [], "fps": []}
    for block in BLOCK.finditer(source):
        for line in block.group(2).splitlines():
            literal = LITERAL.match(line)
            if literal:
                text = literal.group(1)
                value = json.loads(text) if text.startswith('"') else text[1:-1]
                if len(value) >= 12:
                    found[block.group(1)].append(value)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gitleaks", type=Path, help="a git checkout (or bare mirror) of gitleaks")
    parser.add_argument("--show", action="store_true")
    args = parser.parse_args()
    redactor = Redactor(RedactConfig(), key=b"k" * 32)

    def masked(value: str) -> bool:
        event = {"actor": {"cmdline": value, "user": "", "process": ""}, "object": "",
                 "attributes": {}}  # fmt: skip
        return redactor.masked(event)["actor"]["cmdline"] != value

    totals = [0, 0, 0, 0]
    print("| gitleaks rules file | true positives masked | false positives masked |\n|---|---|---|")
    for name in FILES:
        source = subprocess.run(
            ["git", "-C", str(args.gitleaks), "show", f"HEAD:cmd/generate/config/rules/{name}.go"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        found = samples(source)
        tp = [masked(s) for s in found["tps"]]
        fp = [masked(s) for s in found["fps"]]
        figures = (sum(tp), len(tp), sum(fp), len(fp))
        totals = [a + b for a, b in zip(totals, figures, strict=True)]
        print(f"| {name} | {figures[0]} / {figures[1]} | {figures[2]} / {figures[3]} |")
        if args.show:
            for value, hit in zip(found["tps"], tp, strict=True):
                if not hit:
                    print(f"  missed: {value[:160]}")
            for value, hit in zip(found["fps"], fp, strict=True):
                if hit:
                    print(f"  masked: {value[:160]}")
    print(f"| **all** | {totals[0]} / {totals[1]} | {totals[2]} / {totals[3]} |")


if __name__ == "__main__":
    main()
