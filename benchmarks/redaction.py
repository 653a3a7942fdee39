"""Redaction scored on the labelled corpus, side by side with detect-secrets.

    python benchmarks/redaction.py [--runs 5]

For each form of secret in ``tests/data/redaction/corpus.jsonl``: recall (secrets no
longer in the stored text) and evidence kept (user@host targets, hosts, paths, names
still there), for auditpipe's rules and for the detectors of PyPI ``detect-secrets``
(1.5.0, its 27 default plugins with their default entropy limits; ``pip install
detect-secrets`` first, else that column is left out). A detect-secrets finding counts
for a secret when one holds the other (at least 3 characters), and loses a piece of
evidence the same way: it reports values, it does not mask them, so this is the
masking it would allow. Then the cost: µs per corpus value for both, and µs per event of
the redact stage's masking over simulated events (most hold no secret), medians of
--runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config import RedactConfig
from pipeline.redaction import Redactor
from pipeline.sim.simulate import FleetSimulator

CORPUS = Path(__file__).resolve().parent.parent / "tests/data/redaction/corpus.jsonl"


def load() -> list[dict[str, Any]]:
    return [json.loads(line) for line in CORPUS.read_text().splitlines()]


def ours(redactor: Redactor, row: dict[str, Any]) -> str:
    event = {"actor": {"cmdline": row["text"]}, "object": "", "attributes": {}}
    return str(redactor.masked(event)["actor"]["cmdline"])


def detect_secrets_scanner() -> Any:
    try:
        from detect_secrets.settings import default_settings, get_plugins
    except ImportError:
        return None
    with default_settings():
        plugins = list(get_plugins())

    def scan(text: str) -> set[str]:
        found: set[str] = set()
        for plugin in plugins:
            for line in text.splitlines() or [""]:
                for secret in plugin.analyze_line(filename="x.sh", line=line, line_number=1):
                    if secret.secret_value:
                        found.add(secret.secret_value)
        return found

    return scan


def overlaps(a: str, b: str) -> bool:
    return len(a) >= 3 and len(b) >= 3 and (a in b or b in a)


def score(rows: list[dict[str, Any]], redactor: Redactor, scan: Any) -> dict[str, list[int]]:
    """form -> [secrets, ours masked, theirs found, evidence, ours kept, theirs kept]"""
    table: dict[str, list[int]] = defaultdict(lambda: [0] * 6)
    for row in rows:
        cells = table[row["form"]]
        stored = ours(redactor, row)
        found = scan(row["text"]) if scan else set()
        for secret in row["secrets"]:
            cells[0] += 1
            cells[1] += secret not in stored
            cells[2] += any(overlaps(secret, f) for f in found)
        for evidence in row["keep"]:
            cells[3] += 1
            cells[4] += evidence in stored
            cells[5] += not any(overlaps(evidence, f) for f in found)
    return table


def pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"


def timed(call: Any, items: list[Any], runs: int) -> float:
    costs = []
    for _ in range(runs):
        started = time.perf_counter()
        for item in items:
            call(item)
        costs.append((time.perf_counter() - started) / len(items) * 1e6)
    return statistics.median(costs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    rows = load()
    redactor = Redactor(RedactConfig(), b"k" * 32)
    scan = detect_secrets_scanner()
    table = score(rows, redactor, scan)
    print("| form | secrets | auditpipe masked | detect-secrets found | evidence | "
          "auditpipe kept | detect-secrets kept |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    totals = [0] * 6
    for form, c in sorted(table.items()):
        totals = [t + v for t, v in zip(totals, c, strict=True)]
        print(f"| {form} | {c[0]} | {pct(c[1], c[0])} | {pct(c[2], c[0]) if scan else 'n/a'} | "
              f"{c[3]} | {pct(c[4], c[3])} | {pct(c[5], c[3]) if scan else 'n/a'} |")  # fmt: skip
    t = totals
    print(f"| **all ({len(rows)} values)** | {t[0]} | {pct(t[1], t[0])} | "
          f"{pct(t[2], t[0]) if scan else 'n/a'} | {t[3]} | {pct(t[4], t[3])} | "
          f"{pct(t[5], t[3]) if scan else 'n/a'} |")  # fmt: skip
    print()
    print(
        f"auditpipe: {timed(lambda r: ours(redactor, r), rows, args.runs):.1f} µs per corpus value"
    )
    if scan:
        theirs = timed(lambda r: scan(r["text"]), rows, args.runs)
        print(f"detect-secrets: {theirs:.1f} µs per corpus value")
    events = list(FleetSimulator(50, seed=1).events(20_000))
    per_event = timed(redactor.would_change, events, args.runs)
    print(f"auditpipe over simulated events: {per_event:.2f} µs per event")


if __name__ == "__main__":
    main()
