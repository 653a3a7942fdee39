"""The auditd source on real audit logs written by others: what it makes of every record.

    python benchmarks/auditd_corpus.py --corpus DIR

DIR is a local copy of audit logs captured on real machines, for example the test data
of Elastic's go-libaudit (``auparse/testdata/*.log`` and ``testdata/*.log``: RHEL 6 and 7,
Ubuntu 14.04 to 17.04; ``aucoalesce/testdata/*.yaml``: named snippets from RHEL 7 and
Ubuntu 16.04 to 24.04). Fetched, never committed here:

    git -C go-libaudit archive HEAD auparse/testdata testdata aucoalesce/testdata \\
        | tar -x -C /tmp/auditd-corpus

Every line goes through ``AuditdParser`` (as the collector runs it); a ``.yaml`` file's
snippets (``tests: {name: records}``) are fed one by one. Printed: per file, lines,
events made and lines refused (with the reason); the events by category and action;
the exec events without an object (the rules would not see them); and what the default
rule pack raises over all of it (the logs are ordinary machines' days: each alert is
worth a look, a real attack or a false alert). Exits 1 if a line raised anything but
a refusal with its reason.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.collect.sources import ParseError
from pipeline.collect.sources.auditd import AuditdParser
from pipeline.rules.engine import DetectionEngine
from pipeline.rules.language import load_rules
from pipeline.rules.windows import Watermarks


def streams(path: Path) -> list[tuple[str, list[bytes]]]:
    """(name, lines) for each stream of records a file holds."""
    if path.suffix == ".yaml":
        tests = (yaml.safe_load(path.read_text()) or {}).get("tests") or {}
        return [(f"{path.name}:{name}", text.encode().splitlines()) for name, text in tests.items()]
    return [(path.name, path.read_bytes().splitlines())]


def parse(lines: list[bytes], refused: Counter[str]) -> tuple[list[dict[str, Any]], int]:
    """The events of one stream, and the count of lines refused (reasons into refused)."""
    parser = AuditdParser(tenant="corpus", sandbox_id="host")
    events: list[dict[str, Any]] = []
    bad = 0
    for line in lines:
        try:
            events += parser.feed(line)
        except ParseError as exc:
            bad += 1
            refused[str(exc).split(":")[0] if "audit event" in str(exc) else str(exc)] += 1
    try:
        events += parser.finish()
    except ParseError as exc:
        bad += 1
        refused[str(exc)] += 1
    return events, bad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True, help="folder of audit logs")
    args = parser.parse_args()
    files = sorted(p for p in args.corpus.rglob("*") if p.suffix in (".log", ".yaml"))
    if not files:
        sys.exit(f"auditd_corpus: no .log or .yaml file under {args.corpus}")
    refused: Counter[str] = Counter()
    kinds: Counter[tuple[str, str]] = Counter()
    everything: list[dict[str, Any]] = []
    crashed = 0
    print(f"{'file':<52} {'lines':>6} {'events':>6} {'refused':>7}")
    for path in files:
        lines = events = bad = 0
        for _name, stream in streams(path):
            try:
                made, refused_here = parse(stream, refused)
            except Exception as exc:  # a crash, not a refusal: the source has a bug
                crashed += 1
                print(f"  CRASH in {path.name}: {type(exc).__name__}: {exc}")
                continue
            lines += sum(1 for line in stream if line.strip())
            events += len(made)
            bad += refused_here
            everything += made
        print(f"{path.relative_to(args.corpus)!s:<52} {lines:>6} {events:>6} {bad:>7}")
    for event in everything:
        kinds[(event["category"], event["action"])] += 1
    print(f"\n{len(everything)} events from {len(files)} files; refused lines by reason:")
    for reason, count in refused.most_common():
        print(f"  {count:>5}  {reason}")
    print("events by category and action:")
    for (category, action), count in sorted(kinds.items()):
        print(f"  {count:>5}  {category}/{action}")
    blind = [e for e in everything if e["action"] == "exec" and not e["object"]]
    print(f"exec events without an object: {len(blind)}")
    for seq, event in enumerate(sorted(everything, key=lambda e: e["ts"]), 1):
        event["seq"] = seq
    engine = DetectionEngine(load_rules([]), integrity=False)
    alerts = engine.process(everything)
    alerts += engine.suppressor.due(Watermarks(everywhere=1 << 62))
    print(f"alerts of the default pack: {len(alerts)}")
    for alert in alerts:
        print(f"  {alert.rule_id:<14} {alert.severity:<8} {alert.title}")
    if crashed:
        sys.exit(f"auditd_corpus: {crashed} stream(s) crashed the parser")


if __name__ == "__main__":
    main()
