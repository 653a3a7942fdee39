"""``auditpipe rules list|lint|test|import-sigma``.

The files used are the configured ones (``rules.builtin``, ``rules.paths``) or, when
paths are given on the command line, those paths (plus the built-in pack, whose lists
and macros they may use, unless ``--no-builtin``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson
import yaml

from pipeline.commands.base import EXIT_OK, EXIT_USAGE
from pipeline.commands.base import EXIT_PARTIAL as EXIT_FAILED
from pipeline.config import Settings
from pipeline.rules.language import RuleError, RuleSet, load_rules


def add_parser(sub: Any) -> None:
    rules = sub.add_parser("rules", help="list, lint, test or import detection rules")
    actions = rules.add_subparsers(dest="rules_command", required=True, metavar="ACTION")

    def with_paths(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "paths", nargs="*", type=Path, metavar="PATH", help="rule files or dirs"
        )
        parser.add_argument(
            "--no-builtin", action="store_true", help="leave the built-in rule pack out"
        )

    listing = actions.add_parser("list", help="the rules in force: id, kind, severity, title")
    with_paths(listing)
    listing.add_argument("--json", action="store_true", help="one JSON object per rule")
    cover = actions.add_parser(
        "coverage",
        help="the ATT&CK techniques and tactics the rules in force cover; --layer writes "
        "an ATT&CK Navigator layer",
    )
    with_paths(cover)
    cover.add_argument(
        "--layer", type=Path, metavar="FILE", help="write the Navigator layer (JSON) here"
    )
    lint = actions.add_parser(
        "lint",
        help="check rule files: unknown fields, bad regexes, duplicate ids, impossible windows",
    )
    with_paths(lint)
    test = actions.add_parser(
        "test",
        help="run every rule's example events (or --events FILE) and report",
    )
    with_paths(test)
    test.add_argument(
        "--events", type=Path, metavar="FILE", help="JSON-lines events: print the alerts they raise"
    )
    sigma = actions.add_parser(
        "import-sigma", help="convert Sigma rules (and correlations) to auditpipe rules (YAML)"
    )
    sigma.add_argument("files", nargs="+", type=Path, metavar="FILE")
    sigma.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    sigma.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="SIGMA=OURS",
        help="extra field mapping, e.g. --map ParentImage=attributes.parent (repeatable)",
    )


def _ruleset(args: argparse.Namespace, settings: Settings) -> RuleSet:
    if args.paths:
        return load_rules(args.paths, builtin=not args.no_builtin)
    return load_rules(
        list(settings.rules.paths), builtin=settings.rules.builtin and not args.no_builtin
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    command = args.rules_command
    if command == "import-sigma":
        return _import_sigma(args)
    try:
        ruleset = _ruleset(args, settings)
    except RuleError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        print(f"{len(exc.issues)} problems; no rule loaded", file=sys.stderr)
        return EXIT_FAILED
    if command == "list":
        return _list(ruleset, as_json=args.json)
    if command == "coverage":
        return _coverage(ruleset, args.layer)
    if command == "lint":
        kinds = {
            k: sum(1 for r in ruleset.rules if r.kind == k)
            for k in ("event", "threshold", "sequence")
        }
        print(
            f"{len(ruleset.rules)} rules OK ({kinds['event']} event, {kinds['threshold']} "
            f"threshold, {kinds['sequence']} sequence; {len(ruleset.enabled)} enabled)"
        )
        return EXIT_OK
    if args.events is not None:
        return _test_events(ruleset, args.events)
    return _test_examples(ruleset)


def _list(ruleset: RuleSet, *, as_json: bool) -> int:
    for rule in ruleset.rules:
        if as_json:
            print(
                orjson.dumps(
                    {
                        "id": rule.id,
                        "kind": rule.kind,
                        "severity": rule.severity,
                        "enabled": rule.enabled,
                        "title": rule.title,
                        "tags": list(rule.tags),
                        "file": f"{rule.path}:{rule.line}",
                    }
                ).decode()
            )
        else:
            state = "" if rule.enabled else " (disabled)"
            print(f"{rule.id:<14} {rule.kind:<9} {rule.severity:<8} {rule.title}{state}")
    return EXIT_OK


def _coverage(ruleset: RuleSet, layer: Path | None) -> int:
    from pipeline.rules.coverage import coverage, navigator_layer

    found = coverage(ruleset.rules)
    print(
        f"{found.rules} enabled rules; {len(found.techniques)} techniques, "
        f"{len(found.tactics)} tactics"
    )
    for (uid, name), ids in sorted(found.tactics.items()):
        print(f"{uid} {name:<22} {len(ids):>3} rules")
    for technique, ids in sorted(found.techniques.items()):
        print(f"{technique:<10} {len(ids):>3} rules  {', '.join(sorted(ids))}")
    if found.untagged:
        print(f"rules naming no technique: {', '.join(sorted(found.untagged))}")
    if layer is not None:
        layer.write_bytes(orjson.dumps(navigator_layer(found), option=orjson.OPT_INDENT_2))
        print(f"Navigator layer written to {layer}")
    return EXIT_OK


def _test_examples(ruleset: RuleSet) -> int:
    from pipeline.rules.examples import run_examples

    results = run_examples(ruleset)
    failed = [r for r in results if not r.ok]
    for result in failed:
        print(f"FAIL {result}")
    untested = [r.id for r in ruleset.rules if not r.positive]
    if untested:
        print(f"rules without a positive example: {', '.join(untested)}")
    print(f"{len(results)} examples of {len(ruleset.rules)} rules: {len(failed)} failed")
    return EXIT_FAILED if failed else EXIT_OK


def _test_events(ruleset: RuleSet, path: Path) -> int:
    from pipeline.rules.engine import DetectionEngine
    from pipeline.rules.examples import recorded_event
    from pipeline.rules.windows import Watermarks
    from pipeline.schema.event import InvalidEvent

    engine = DetectionEngine(ruleset)
    events = []
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        print(f"auditpipe: {path}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            fields = orjson.loads(line)
            if not isinstance(fields, dict):
                raise InvalidEvent("event", "not a JSON object")
            events.append(recorded_event(fields, number))
        except orjson.JSONDecodeError as exc:
            print(f"{path}:{number}: not JSON: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except InvalidEvent as exc:
            print(f"{path}:{number}: {exc}", file=sys.stderr)
            return EXIT_USAGE
    alerts = engine.process(events) + engine.suppressor.due(Watermarks(everywhere=1 << 62))
    for alert in alerts:
        print(orjson.dumps(alert.record()).decode())
    print(f"{len(events)} events, {len(alerts)} alerts", file=sys.stderr)
    return EXIT_OK


def _import_sigma(args: argparse.Namespace) -> int:
    from pipeline.rules.sigma_import import SigmaImportError, import_sigma

    mapping = dict(item.split("=", 1) for item in args.map if "=" in item)
    if len(mapping) != len(args.map):
        print("auditpipe: --map takes SIGMA=OURS", file=sys.stderr)
        return EXIT_USAGE
    rules: list[dict[str, Any]] = []
    errors = 0
    for path in args.files:
        try:
            rules.extend(import_sigma(path.read_text(), mapping))
        except OSError as exc:
            print(f"auditpipe: {path}: {exc.strerror}", file=sys.stderr)
            errors += 1
        except SigmaImportError as exc:
            print(f"{path}: {exc}", file=sys.stderr)
            errors += 1
    text = yaml.safe_dump({"rules": rules}, sort_keys=False, allow_unicode=True, width=100)
    if args.output:
        args.output.write_text(text)
        print(f"{len(rules)} rules written to {args.output}; {errors} files with errors")
    else:
        sys.stdout.write(text)
    return EXIT_FAILED if errors else EXIT_OK
