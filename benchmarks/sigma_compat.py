"""Sigma compatibility, measured on SigmaHQ's Linux rules: how many ``import-sigma``
converts (and why not the others), and whether each converted rule matches the same
events as Sigma's own semantics.

    python benchmarks/sigma_compat.py --sigma PATH [--subdir rules/linux]

PATH is a local copy of https://github.com/SigmaHQ/sigma (measured at commit 8eaafff,
2026-08-05; none of its rules is part of this repository). For every rule file:

1. conversion: ``import_sigma`` then our parser; a failure is reported with its reason;
2. agreement: test events are made from the rule's own detection, in our schema: for
   each search identifier an event that satisfies it, one that satisfies every
   non-filter identifier together, and for each of those a negative copy with one value
   changed. Each event is judged twice: by our engine running the converted rule, and
   by a reference evaluation of the Sigma rule written here from the Sigma
   specification (strings case-insensitive with ``*``/``?`` wildcards over the whole
   value, regexes searched as written, cidr, numbers compared, null as missing or
   empty, keywords found anywhere in the event's text), reading each Sigma field where
   the importer maps it. A rule agrees when every event gets the same verdict.

Prints the figures by log source, the reason for every rule not converted and every
disagreement.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sigma.collection import SigmaCollection
from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.rule import SigmaDetection, SigmaDetectionItem, SigmaRule
from sigma.types import (
    SigmaBool,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaString,
    SpecialChars,
)

from pipeline.rules.compiler import all_text
from pipeline.rules.engine import DetectionEngine, field_getter
from pipeline.rules.examples import example_event
from pipeline.rules.language import RuleError, parse_rules
from pipeline.rules.sigma_import import LOGSOURCE, SigmaImportError, _Importer, import_sigma

BASE = {
    "process_creation": {"category": "process", "action": "exec"},
    "file_event": {"category": "file", "action": "write"},
    "network_connection": {"category": "network", "action": "connect"},
}
CHANGED = "zz-benign-zz"


# -- test events made from the detection ---------------------------------------------------


def sample(value: Any) -> Any:
    """A value that the Sigma value matches (None when none can be made simply)."""
    if isinstance(value, SigmaString):
        multi, single = SpecialChars.WILDCARD_MULTI, SpecialChars.WILDCARD_SINGLE
        return "".join("_" if p is multi else "a" if p is single else str(p) for p in value.s)
    if isinstance(value, SigmaRegularExpression):
        plain = str(value.regexp)
        return plain if re.escape(plain) == plain else None
    if isinstance(value, SigmaCIDRExpression):
        return str(next(iter(ipaddress.ip_network(str(value.cidr), strict=False).hosts()), ""))
    if isinstance(value, SigmaCompareExpression):
        return value.number.number + (1 if value.op.name.startswith("G") else -1)
    if isinstance(value, SigmaNumber | SigmaBool):
        return value.number if isinstance(value, SigmaNumber) else value.boolean
    return None


def place(event: dict[str, Any], ours: str, value: Any) -> None:
    """Put ``value`` where our field ``ours`` reads it."""
    if value is None:
        return
    if ours in ("object_host", "object_port"):
        host, _, port = str(event.get("object") or ":").partition(":")
        host, port = (str(value), port) if ours == "object_host" else (host, str(value))
        event["object"] = f"{host or 'h.example'}:{port or '443'}"
    elif ours == "text":
        actor = event.setdefault("actor", {})
        actor["cmdline"] = f"{actor.get('cmdline', '')} {value}".strip()
    elif "." in ours:
        head, rest = ours.split(".", 1)
        event.setdefault(head, {})[rest] = str(value) if head != "actor" else value
    else:
        event[ours] = value


def items(detection: SigmaDetection) -> list[SigmaDetectionItem]:
    """The items an event must satisfy for ``detection`` (the first of an OR list)."""
    from sigma.conditions import ConditionOR as Or

    chosen = detection.detection_items[:1] if detection.item_linking is Or else (
        detection.detection_items
    )  # fmt: skip
    out: list[SigmaDetectionItem] = []
    for item in chosen:
        out += items(item) if isinstance(item, SigmaDetection) else [item]
    return out


def events_for(rule: SigmaRule, importer: _Importer) -> list[dict[str, Any]]:
    category = rule.logsource.category
    importer.rule = rule
    importer.auditd = rule.logsource.service == "auditd" and category is None
    base = dict(BASE.get(category or "", {"category": "process", "action": "exec"}))
    if importer.auditd:
        base["attributes"] = {"auditd.records": "SYSCALL,EXECVE,PATH,PROCTITLE"}

    def build(chosen: list[SigmaDetectionItem]) -> dict[str, Any]:
        event: dict[str, Any] = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
        for item in chosen:
            if item.field == "Initiated":  # outbound: our events' default
                continue
            values = item.value if item.value_linking is ConditionAND else item.value[:1]
            for value in values:
                ours = "text" if item.field is None else importer.field(item.field, category)
                made = sample(value)
                if ours == "actor.process" and isinstance(made, str) and "/" in made:
                    made = made.rsplit("/", 1)[1]
                if ours == "attributes.auditd.records":
                    made = f"SYSCALL,{made}"
                place(event, ours, made)
        return event

    detections = rule.detection.detections
    positives = [build(items(d)) for d in detections.values()]
    wanted = [i for name, d in detections.items() if "filter" not in name for i in items(d)]
    positives.append(build(wanted))
    negatives = []
    for event in positives:
        changed = dict(event)
        changed["actor"] = {**event.get("actor", {}), "cmdline": CHANGED}
        changed["object"] = CHANGED
        negatives.append(changed)
    return positives + negatives


# -- Sigma's semantics, written from the specification -------------------------------------


def string_matches(value: SigmaString, text: str) -> bool:
    multi, single = SpecialChars.WILDCARD_MULTI, SpecialChars.WILDCARD_SINGLE
    pattern = "".join(
        ".*" if p is multi else "." if p is single else re.escape(str(p)) for p in value.s
    )
    return re.fullmatch(pattern, text, re.IGNORECASE | re.DOTALL) is not None


def value_matches(value: Any, raw: Any) -> bool:
    if isinstance(value, SigmaNull):
        return raw is None or raw == ""
    if raw is None:
        return False
    text = str(raw)
    if isinstance(value, SigmaString):
        return string_matches(value, text)
    if isinstance(value, SigmaRegularExpression):
        flags = sum(getattr(re, f.name) for f in value.flags or ())
        return re.search(str(value.regexp), text, flags) is not None
    if isinstance(value, SigmaCIDRExpression):
        try:
            return ipaddress.ip_address(text) in ipaddress.ip_network(str(value.cidr), strict=False)
        except ValueError:
            return False
    if isinstance(value, SigmaCompareExpression):
        try:
            number = float(text)
        except ValueError:
            return False
        return {
            "LT": number < value.number.number,
            "LTE": number <= value.number.number,
            "GT": number > value.number.number,
            "GTE": number >= value.number.number,
        }[value.op.name]
    if isinstance(value, SigmaNumber):
        return text == str(value.number)
    if isinstance(value, SigmaBool):
        return text.lower() == str(value.boolean).lower()
    return False


def sigma_verdict(node: Any, event: dict[str, Any], importer: _Importer, category: Any) -> bool:
    if isinstance(node, ConditionAND):
        return all(sigma_verdict(a, event, importer, category) for a in node.args)
    if isinstance(node, ConditionOR):
        return any(sigma_verdict(a, event, importer, category) for a in node.args)
    if isinstance(node, ConditionNOT):
        return not sigma_verdict(node.args[0], event, importer, category)
    if isinstance(node, ConditionValueExpression):  # a keyword: anywhere in the log line
        value = node.value
        text = all_text(event)
        if isinstance(value, SigmaString):
            return string_matches(value, text) or any(
                string_matches(value, part) or str(value).lower() in part.lower()
                for part in text.split("\n")
            )
        return value_matches(value, text)
    if isinstance(node, ConditionFieldEqualsValueExpression):
        if node.field == "Initiated":
            inbound = (event.get("attributes") or {}).get("direction", "").lower() == "inbound"
            return (str(node.value).lower() == "true") != inbound
        ours = importer.field(node.field, category)
        raw = field_getter(ours)(event)
        if ours == "actor.process" and raw:
            raw = f"/{raw}"  # a process name stands for its program's path
        if ours == "attributes.auditd.records":  # the record types joined into the event
            return any(value_matches(node.value, kind) for kind in str(raw or "").split(","))
        return value_matches(node.value, raw)
    raise TypeError(type(node).__name__)


# -- the run ---------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sigma", type=Path, required=True, help="a checkout of SigmaHQ/sigma")
    parser.add_argument("--subdir", default="rules/linux")
    args = parser.parse_args()
    root = args.sigma / args.subdir
    files = sorted(root.rglob("*.yml"))
    if not files:
        parser.error(f"no Sigma rule under {root}")
    total, converted, agreed = Counter(), Counter(), Counter()
    failures: list[str] = []
    disagreements: list[str] = []
    tested = positives = 0
    for path in files:
        group = path.relative_to(root).parts[0]
        total[group] += 1
        text = path.read_text()
        try:
            ruleset = parse_rules({"rules": import_sigma(text)}, str(path))
        except (SigmaImportError, RuleError) as exc:
            failures.append(f"{path.relative_to(root)}: {str(exc).splitlines()[0]}")
            continue
        converted[group] += 1
        sigma_rule = next(r for r in SigmaCollection.from_yaml(text) if isinstance(r, SigmaRule))
        importer = _Importer({})
        events = [example_event(e, i) for i, e in enumerate(events_for(sigma_rule, importer))]
        category = sigma_rule.logsource.category
        trees = [c.parsed for c in sigma_rule.detection.parsed_condition]
        wrong = []
        for event in events:
            want = any(sigma_verdict(t, event, importer, category) for t in trees)
            got = bool(DetectionEngine(ruleset, suppress_ms=0).process([event]))
            tested += 1
            positives += want
            if want != got:
                wrong.append(
                    f"sigma {want}, ours {got}: {event.get('actor', {}).get('cmdline', '')[:80]!r}"
                )
        if wrong:
            disagreements.append(f"{path.relative_to(root)}: {wrong[0]}")
        else:
            agreed[group] += 1
    print(f"Sigma rules under {root}: {sum(total.values())}\n")
    print(f"{'log source':<20} {'converted':>12} {'agree':>12}")
    for group in sorted(total):
        done, of = f"{converted[group]} / {total[group]}", f"{agreed[group]} / {converted[group]}"
        print(f"{group:<20} {done:>12} {of:>12}")
    all_total, all_conv, all_agree = (
        sum(total.values()),
        sum(converted.values()),
        sum(agreed.values()),
    )
    print(
        f"{'all':<20} {f'{all_conv} / {all_total}':>12} {f'{all_agree} / {all_conv}':>12}"
        f"\n\nconverted {all_conv / all_total:.1%}; of those, agreeing with Sigma's semantics "
        f"{all_agree / max(all_conv, 1):.1%} ({tested} test events, {positives} of them "
        "matching the Sigma rule)"
    )
    print(f"\nnot converted ({len(failures)}):")
    for line in failures:
        print(f"  {line}")
    print(f"\ndisagreements ({len(disagreements)}):")
    for line in disagreements:
        print(f"  {line}")
    assert set(LOGSOURCE)  # the importer's log sources, for a reader of this file


if __name__ == "__main__":
    main()
