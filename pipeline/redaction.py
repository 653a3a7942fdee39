"""Masking secrets and personal data in events: the rules and the engine.

Used where an event is first handled: the collector masks before it seals an event into
its sandbox's hash chain, so the chain covers exactly what is stored and every stored
row's content can be verified; the publisher masks events that carry no chain; the
worker's redact stage masks unchained events and refuses chained ones that still hold a
secret (``pipeline/stages/redact.py``).

Rules are regular expressions; a match is replaced by ``[REDACTED:<rule>]`` (a prefix
such as ``password=`` is kept, so the analyst still sees what was there: a group named
``keep`` before the secret, and one named ``after`` behind it, stay).

Every value comes from a sandbox, so the rules run on RE2 (``google-re2``), whose
matching time is linear in the value's length whatever the pattern: with Python's
backtracking engine the e-mail and URL-password rules took time quadratic in the length
(0.55 s for one 32 KB value built to backtrack, measured here; a message of such values
took minutes). RE2 has no look-around or back-references: an operator's own rule that
uses them is refused when the configuration is read.

The rules apply to ``redact.fields``: by default the command line, the object, the user
and every attribute value. A redacted event names what was masked in
``attributes["auditpipe.redacted"]`` (``rule@field``, comma-separated).

Each default rule has trigger substrings, checked first on the lower-cased value: most
values (paths, ordinary command lines) contain none and cost no regex at all.

>>> redactor = Redactor(RedactConfig())
>>> event = {"actor": {"user": "ci", "cmdline":
...     "curl -H 'Authorization: Bearer eyJhbGciOi.J9x' https://bob:hunter2@git.example.com"},
...     "object": "/home/ci", "attributes": {"note": "mail alice@example.com"}}
>>> out = redactor.masked(event)
>>> out["actor"]["cmdline"].split(" ")[4:]
["[REDACTED:bearer_token]'", 'https://bob:[REDACTED:url_password]@git.example.com']
>>> out["attributes"]["note"]
'mail [REDACTED:email]'
>>> out["attributes"]["auditpipe.redacted"].split(",")
['bearer_token@actor.cmdline', 'url_password@actor.cmdline', 'email@attributes.note']
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import re2

from pipeline.config import ConfigError, RedactConfig
from pipeline.schema.event import Event

REDACTED_ATTRIBUTE = "auditpipe.redacted"


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: Any
    """A compiled RE2 pattern (linear-time matching)."""
    triggers: tuple[str, ...]
    """Lower-case substrings one of which a value must hold for the rule to run."""

    def apply(self, value: str, lowered: str) -> tuple[str, int]:
        if self.triggers and not any(t in lowered for t in self.triggers):
            return value, 0
        mask = f"[REDACTED:{self.name}]"
        groups = self.pattern.groupindex
        keep, after = "keep" in groups, "after" in groups
        if not (keep or after):
            return self.pattern.subn(mask, value)  # type: ignore[no-any-return]
        return self.pattern.subn(  # type: ignore[no-any-return]
            lambda m: (
                ((m.group("keep") or "") if keep else "")
                + mask
                + ((m.group("after") or "") if after else "")
            ),
            value,
        )


# Order matters: a password in a URL is masked before the e-mail rule could see it.
DEFAULT_RULES: dict[str, tuple[str, tuple[str, ...]]] = {
    "private_key": (
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?"
        r"(?:-----END [A-Z ]*PRIVATE KEY-----|$)",
        ("private key",),
    ),
    "aws_access_key": (r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", ("akia", "asia")),
    "aws_secret_key": (
        r"(?i)(?P<keep>aws_secret_access_key\s*[=:]\s*['\"]?)"
        r"[A-Za-z0-9/+=]{40}",
        ("aws_secret",),
    ),
    "bearer_token": (r"(?i)(?P<keep>\bbearer\s+)[A-Za-z0-9\-._~+/]+=*", ("bearer",)),
    "url_password": (
        r"(?P<keep>[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]+:)[^@\s/]+(?P<after>@)",
        ("://",),
    ),
    "secret_param": (
        r"(?i)(?P<keep>\b(?:password|passwd|pwd|secret|token|api[_-]?key)"
        r"\s*[=:]\s*['\"]?)[^\s&'\"]+",
        ("pass", "pwd", "secret", "token", "api_key", "api-key", "apikey"),
    ),
    "github_token": (r"\bgh[pousr]_[A-Za-z0-9]{36,}\b", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_")),
    "email": (r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b", ("@",)),
}


def build_rules(config: RedactConfig) -> list[Rule]:
    """The default rules (minus those the config turns off) and the config's own."""
    rules = [
        Rule(name, _compile(name, pattern), triggers)
        for name, (pattern, triggers) in DEFAULT_RULES.items()
        if name not in config.disable
    ]
    rules += [Rule(name, _compile(name, pattern), ()) for name, pattern in config.rules.items()]
    return rules


def _compile(name: str, pattern: str) -> Any:
    """The pattern compiled by RE2; ConfigError naming the rule when RE2 cannot take it."""
    options = re2.Options()
    options.log_errors = False
    try:
        return re2.compile(pattern, options=options)
    except re2.error as exc:
        detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise ConfigError(
            f"redact.rules.{name}: {detail} (redaction uses RE2, a linear-time engine: no "
            "look-around or back-references)"
        ) from None


class Redactor:
    """Masks the configured fields of events in place.

    Idempotent: masking a masked value changes nothing, and only values that changed are
    named in ``attributes["auditpipe.redacted"]``; so an event masked at the edge passes
    the worker's stage unchanged, and a chained event is known to need masking only when
    a value would really change.
    """

    def __init__(self, config: RedactConfig) -> None:
        self.config = config
        self.rules = build_rules(config)
        # One search in C per value decides whether any rule can apply at all.
        triggers = [t for rule in self.rules for t in rule.triggers]
        untriggered = any(not rule.triggers for rule in self.rules)
        # (Lower-casing first and a case-sensitive search: 0.5 us a value, where an
        # IGNORECASE alternation measured 3.4 us.)
        self._may_match = (
            None if untriggered else re.compile("|".join(map(re.escape, triggers))).search
        )
        self.redactions: Counter[str] = Counter()
        """Values masked, by rule."""
        self._actor_fields = [f.split(".", 1)[1] for f in config.fields if f.startswith("actor.")]
        self._object = "object" in config.fields
        self._attributes = "attributes" in config.fields

    def mask(self, event: Event) -> bool:
        """Mask the event's secrets in place; True when a value changed."""
        may_match = self._may_match
        if may_match is not None and may_match(_unmasked(self._joined(event).lower())) is None:
            return False  # the common case: one search per event, no rule can apply
        found: list[str] = []
        actor = event["actor"]
        for field in self._actor_fields:
            if actor.get(field):
                actor[field] = self._mask(actor[field], f"actor.{field}", found)
        if self._object and event["object"]:
            event["object"] = self._mask(event["object"], "object", found)
        if self._attributes:
            attributes = event["attributes"]
            for key, value in attributes.items():
                if value and key != REDACTED_ATTRIBUTE:
                    attributes[key] = self._mask(value, f"attributes.{key}", found)
        if not found:
            return False
        before = event["attributes"].get(REDACTED_ATTRIBUTE)
        named = ",".join(found)
        event["attributes"][REDACTED_ATTRIBUTE] = f"{before},{named}" if before else named
        return True

    def would_change(self, event: Event) -> bool:
        """Whether masking would change the event (it is left as it is). The prefilter
        answers for most events without a copy."""
        may_match = self._may_match
        if may_match is not None and may_match(_unmasked(self._joined(event).lower())) is None:
            return False
        return self.masked(event) != event

    def masked(self, event: Event) -> Event:
        """A masked copy of the event (the event itself is left as it is)."""
        copy = {**event, "actor": dict(event["actor"]), "attributes": dict(event["attributes"])}
        self.mask(copy)
        return copy

    def _joined(self, event: Event) -> str:
        actor = event["actor"]
        parts = [actor.get(field) or "" for field in self._actor_fields]
        if self._object:
            parts.append(event["object"])
        if self._attributes:
            parts.extend(event["attributes"].values())
        return "\n".join(parts)

    def _mask(self, value: str, where: str, found: list[str]) -> str:
        lowered = value.lower()
        if self._may_match is not None and self._may_match(_unmasked(lowered)) is None:
            return value
        for rule in self.rules:
            new, count = rule.apply(value, lowered)
            if count and new != value:  # a masked secret masked again stays the same
                self.redactions[rule.name] += count
                found.append(f"{rule.name}@{where}")
                value, lowered = new, new.lower()
        return value


_MASK = re.compile(r"\[redacted:[a-z0-9_.-]*\]")


def _unmasked(lowered: str) -> str:
    """The lower-cased text without the masks already in it: a mask names its rule
    (``[redacted:secret_param]``), and those names hold trigger words; an event masked at
    the edge would otherwise run every rule again in the worker."""
    return _MASK.sub("", lowered) if "[redacted:" in lowered else lowered
