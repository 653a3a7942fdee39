"""Sigma rules to auditpipe rules (``auditpipe rules import-sigma FILES...``).

pySigma parses the files (detections, conditions, modifiers, correlations); this module
maps what it parsed onto our language through the field mapping below, and refuses
with a clear error, naming the rule and the construct, what it cannot map.

What maps:

* detection selections and conditions (``and``, ``or``, ``not``, ``1 of``, ``all of``);
* string values with wildcards and the modifiers contains, startswith, endswith, all
  (as equals/contains/startswith/endswith, or a regex for inner wildcards), re, cidr,
  gt/gte/lt/lte, exists and null. Sigma matches text case-insensitively, so the imported
  matchers use ``nocase``;
* logsource categories process_creation, file_event, file_access, file_delete,
  file_change, network_connection and authentication, which become category/action
  conditions;
* correlations event_count (threshold count), value_count (distinct), value_sum (sum),
  temporal (sequence, any order) and temporal_ordered (sequence). ``group-by`` becomes
  ``by``; ``timespan`` the window. The referenced rules do not alert on their own unless
  the correlation says ``generate: true``.

>>> rules = import_sigma('''
... title: Shadow read
... id: 5c5d8f8e-6a2b-4c8e-9b9e-0f5e6d7c8b9a
... logsource: {product: linux, category: file_access}
... detection:
...   sel: {TargetFilename|endswith: /shadow}
...   condition: sel
... level: high
... ''')
>>> rules[0]["condition"]
{'all': [{'category': 'file'}, {'action': ['read', 'open']}, \
{'object': {'endswith': ['/shadow'], 'nocase': True}}]}
"""

from __future__ import annotations

import re
from typing import Any

from sigma.collection import SigmaCollection
from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.correlations import SigmaCorrelationRule, SigmaCorrelationType
from sigma.exceptions import SigmaError
from sigma.rule import SigmaRule
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

from pipeline.rules.language import field_kind

FIELD_MAP: dict[str, str] = {
    "CommandLine": "actor.cmdline",
    "ProcessCommandLine": "actor.cmdline",
    "User": "actor.user",
    "SubjectUserName": "actor.user",
    "TargetUserName": "actor.user",
    "ProcessId": "actor.pid",
    "ParentProcessId": "actor.ppid",
    "ParentImage": "actor.parent_process",
    "ParentCommandLine": "actor.parent_cmdline",
    "LogonId": "attributes.logon_id",
    "CurrentDirectory": "attributes.cwd",
    "TargetFilename": "object",
    "TargetObject": "object",
    "DestinationIp": "object_host",
    "DestinationHostname": "object_host",
    "DestinationPort": "object_port",
    "SourceIp": "attributes.source_ip",
    "ComputerName": "sandbox_id",
    "Computer": "sandbox_id",
    "Hostname": "sandbox_id",
    "hostname": "sandbox_id",
    "Tenant": "tenant",
}
"""Sigma field -> auditpipe field. ``Image`` depends on the log source: the executed
program (``object``) for process_creation, the acting process (``actor.process``,
matched on the file name) elsewhere. Our own field names are accepted as they are."""

LOGSOURCE: dict[str, dict[str, Any]] = {
    "process_creation": {"all": [{"category": "process"}, {"action": "exec"}]},
    "file_event": {
        "all": [{"category": "file"}, {"action": ["write", "create", "rename", "modify"]}]
    },
    "file_change": {"all": [{"category": "file"}, {"action": ["write", "modify"]}]},
    "file_access": {"all": [{"category": "file"}, {"action": ["read", "open"]}]},
    "file_delete": {"all": [{"category": "file"}, {"action": "delete"}]},
    "network_connection": {"all": [{"category": "network"}, {"action": "connect"}]},
    "authentication": {"category": "auth"},
}
AUDITD_RECORDS = "attributes.auditd.records"
"""The record types the auditd source joined into the event (``SYSCALL,EXECVE,PATH``)."""
_AUDITD_PATH = frozenset(
    ("name", "nametype", "inode", "dev", "mode", "ouid", "ogid", "rdev", "objtype")
)


def auditd_field(name: str) -> str:
    """A field of Sigma's auditd log source (one audit record per event there; the
    records of one audit event joined here, ``collect/sources/auditd.py``): ``type`` is
    a record type among the joined ones, ``a0``.. an EXECVE argument, ``name`` and the
    other PATH fields the object's PATH record, ``SYSCALL``/``syscall`` the call's name,
    anything else the SYSCALL record's field."""
    if name == "type":
        return AUDITD_RECORDS
    if re.fullmatch(r"a[0-9]+|argc", name):
        return f"attributes.auditd.execve.{name}"
    if name in _AUDITD_PATH:
        return f"attributes.auditd.path.{name}"
    if name.lower() == "syscall":
        return "attributes.auditd.syscall_name"
    return f"attributes.auditd.{name}"


_REGEX_FLAGS = {"IGNORECASE": "i", "MULTILINE": "m", "DOTALL": "s"}
LEVELS = {"informational": "low", "low": "low", "medium": "medium", "high": "high"}
LEVELS["critical"] = "critical"


class SigmaImportError(ValueError):
    """A Sigma rule (or file) that cannot be mapped; the message names rule and construct."""


def _rule_name(rule: SigmaRule | SigmaCorrelationRule) -> str:
    return f"'{rule.title}'" + (f" ({rule.id})" if rule.id else "")


class _Importer:
    def __init__(self, extra_fields: dict[str, str]) -> None:
        self.fields = {**FIELD_MAP, **extra_fields}
        self.extra = extra_fields
        self.rule: SigmaRule | SigmaCorrelationRule | None = None
        self.auditd = False
        """The rule reads auditd records (``logsource: {service: auditd}``)."""

    def fail(self, construct: str) -> SigmaImportError:
        name = _rule_name(self.rule) if self.rule is not None else "?"
        return SigmaImportError(f"Sigma rule {name}: cannot map {construct}")

    # Fields and values

    def field(self, name: str | None, category: str | None) -> str:
        if name is None:
            raise self.fail("a keyword (field-less) search")
        if self.auditd and name not in self.extra and name != "text":
            return auditd_field(name)
        if name == "Image" or name == "NewProcessName":
            return "object" if category == "process_creation" else "actor.process"
        if name in self.fields:
            return self.fields[name]
        if field_kind(name) is not None:
            return name
        raise self.fail(
            f"the field {name!r} (map it with --map {name}=<auditpipe field>; "
            "see docs/rules.md, 'Sigma import')"
        )

    def match(self, sigma_field: str | None, value: Any, category: str | None) -> dict[str, Any]:
        if sigma_field == "Initiated" and str(value).lower() in ("true", "false"):
            # Sysmon's "this host opened the connection": ours unless marked inbound
            inbound = {"attributes.direction": {"equals": ["inbound"], "nocase": True}}
            return {"not": inbound} if str(value).lower() == "true" else inbound
        ours = self.field(sigma_field, category)
        if ours == AUDITD_RECORDS and isinstance(value, SigmaString):
            # type: EXECVE -> one of the event's joined records is an EXECVE record
            kind = re.escape(str(value).strip())
            return {ours: {"regex": f"(?i)(^|,){kind}(,|$)"}}
        basename = ours == "actor.process"
        if isinstance(value, SigmaString):
            return {ours: self._string(value, basename)}
        if isinstance(value, SigmaRegularExpression):
            flags = "".join(sorted(_REGEX_FLAGS[f.name] for f in value.flags or ()))
            pattern = str(value.regexp)
            return {ours: {"regex": f"(?{flags}){pattern}" if flags else pattern}}
        if isinstance(value, SigmaCIDRExpression):
            return {ours: {"cidr": value.cidr}}
        if isinstance(value, SigmaCompareExpression):
            op = {"LT": "lt", "LTE": "lte", "GT": "gt", "GTE": "gte"}[value.op.name]
            return {ours: {op: value.number.number}}
        if isinstance(value, SigmaNumber):
            return {ours: value.number}
        if isinstance(value, SigmaBool):
            return {ours: value.boolean}
        if isinstance(value, SigmaNull):
            return {ours: {"exists": False}}
        raise self.fail(f"the value {type(value).__name__} of field {sigma_field!r}")

    def keyword(self, value: Any, category: str | None) -> dict[str, Any]:
        """A field-less value: found anywhere in the event's text (``text``: command
        line, object, attribute values), as Sigma searches a whole log line."""
        found = self.match("text", value, category)
        spec = found["text"]
        if isinstance(spec, dict) and "regex" in spec and isinstance(value, SigmaString):
            spec["regex"] = spec["regex"].replace("(?i)^", "(?i)", 1).removesuffix("$")
        elif isinstance(spec, dict):
            for op in ("equals", "startswith", "endswith"):
                if op in spec:
                    spec["contains"] = spec.pop(op)
        return found

    def _string(self, value: SigmaString, basename: bool) -> Any:
        parts = list(value.s)
        multi, single = SpecialChars.WILDCARD_MULTI, SpecialChars.WILDCARD_SINGLE
        if single in parts or multi in parts[1:-1]:
            pattern = "".join(
                ".*" if p is multi else "." if p is single else re.escape(str(p)) for p in parts
            )
            return {"regex": f"(?i)^{pattern}$"}
        leading, trailing = parts[:1] == [multi], parts[-1:] == [multi]
        text = "".join(str(p) for p in parts if p is not multi)
        if basename and leading and "/" in text:  # "*/bash" names a program: bash
            text, leading = text.rsplit("/", 1)[1], False
        op = (
            "contains"
            if leading and trailing
            else "endswith"
            if leading
            else "startswith"
            if trailing
            else "equals"
        )
        return {op: [text], "nocase": True}

    # Conditions

    def condition(self, node: Any, category: str | None) -> dict[str, Any]:
        if isinstance(node, ConditionAND):
            return {"all": [self.condition(a, category) for a in node.args]}
        if isinstance(node, ConditionOR):
            return {"any": [self.condition(a, category) for a in node.args]}
        if isinstance(node, ConditionNOT):
            return {"not": self.condition(node.args[0], category)}
        if isinstance(node, ConditionFieldEqualsValueExpression):
            return self.match(node.field, node.value, category)
        if isinstance(node, ConditionValueExpression):
            return self.keyword(node.value, category)
        raise self.fail(f"the condition element {type(node).__name__}")

    def detection(self, rule: SigmaRule) -> dict[str, Any]:
        self.rule = rule
        category = rule.logsource.category
        self.auditd = rule.logsource.service == "auditd" and category is None
        try:
            parsed = [c.parsed for c in rule.detection.parsed_condition]
        except SigmaError as exc:
            raise self.fail(f"its condition: {exc}") from None
        ours = [self.condition(p, category) for p in parsed]
        condition = ours[0] if len(ours) == 1 else {"any": ours}
        if self.auditd:  # only events the auditd source made
            return {"all": [{AUDITD_RECORDS: {"exists": True}}, condition]}
        if category in LOGSOURCE:
            source = LOGSOURCE[category]
            return {"all": [*source.get("all", [source]), condition]}
        if category is not None:
            raise self.fail(
                f"the log source category {category!r} (known: {', '.join(sorted(LOGSOURCE))})"
            )
        return condition

    # Rules

    def base(self, rule: SigmaRule) -> dict[str, Any]:
        return {
            **self._header(rule, "sigma-" + (rule.name or str(rule.id or rule.title))),
            "condition": self.detection(rule),
        }

    def _header(self, rule: SigmaRule | SigmaCorrelationRule, rule_id: str) -> dict[str, Any]:
        level = rule.level.name.lower() if rule.level is not None else "medium"
        header: dict[str, Any] = {
            "id": re.sub(r"[^A-Za-z0-9_.-]", "-", rule_id),
            "title": rule.title,
            "severity": LEVELS.get(level, "medium"),
            "tags": [f"{t.namespace}.{t.name}" for t in rule.tags],
        }
        if rule.description:
            header["description"] = rule.description
        return header

    def correlation(self, rule: SigmaCorrelationRule) -> dict[str, Any]:
        self.rule = rule
        referenced = [ref.rule for ref in rule.rules or []]
        if not referenced or not all(isinstance(r, SigmaRule) for r in referenced):
            raise self.fail("a correlation whose referenced rules are not in the files given")
        conditions = [self.detection(r) for r in referenced if isinstance(r, SigmaRule)]
        self.rule = rule
        by = [self.field(f, None) for f in rule.group_by or []]
        window = f"{rule.timespan.seconds}s"
        out = self._header(rule, "sigma-" + (rule.name or str(rule.id or rule.title)))
        kind = rule.type
        if kind in (SigmaCorrelationType.TEMPORAL, SigmaCorrelationType.TEMPORAL_ORDERED):
            out["sequence"] = {
                "within": window,
                "by": by,
                "ordered": kind is SigmaCorrelationType.TEMPORAL_ORDERED,
                "steps": [{"condition": c} for c in conditions],
            }
            return out
        aggregates = {
            SigmaCorrelationType.EVENT_COUNT: "count",
            SigmaCorrelationType.VALUE_COUNT: "distinct",
            SigmaCorrelationType.VALUE_SUM: "sum",
        }
        if kind not in aggregates:
            raise self.fail(f"the correlation type {kind.name.lower()}")
        condition = rule.condition
        op = getattr(getattr(condition, "op", None), "name", "")
        if op not in ("GT", "GTE"):
            raise self.fail(
                f"the correlation condition {op.lower() or type(condition).__name__} "
                "(a window fires when it rises: use gt or gte)"
            )
        spec: dict[str, Any] = {op.lower(): condition.count}  # type: ignore[union-attr]
        if kind is not SigmaCorrelationType.EVENT_COUNT:
            fieldref = getattr(condition, "fieldref", None)
            spec["field"] = self.field(fieldref, None)
        out["condition"] = conditions[0] if len(conditions) == 1 else {"any": conditions}
        out["threshold"] = {"window": window, "by": by, aggregates[kind]: spec}
        return out


def import_sigma(text: str, extra_fields: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Our rules (as YAML-ready dicts) for the Sigma rules of a document."""
    try:
        collection = SigmaCollection.from_yaml(text)
        collection.resolve_rule_references()
    except SigmaError as exc:
        raise SigmaImportError(f"not a usable Sigma document: {exc}") from None
    importer = _Importer(extra_fields or {})
    correlations = [r for r in collection if isinstance(r, SigmaCorrelationRule)]
    hidden = {
        id(ref.rule) for c in correlations if not c.generate for ref in c.rules or []
    }  # referenced by a correlation that does not generate them: no standalone alert
    out = []
    for rule in collection:
        if isinstance(rule, SigmaRule) and id(rule) not in hidden:
            out.append(importer.base(rule))
        elif isinstance(rule, SigmaCorrelationRule):
            out.append(importer.correlation(rule))
    return out
