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

import hashlib
import hmac
import os
import re
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ahocorasick
import re2

from pipeline.config import ConfigError, RedactConfig
from pipeline.redaction_rules import DEFAULT_RULES, SPARE
from pipeline.schema.event import Event

REDACTED_ATTRIBUTE = "auditpipe.redacted"


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: Any
    """A compiled RE2 pattern (linear-time matching)."""
    triggers: tuple[str, ...]
    """Lower-case substrings one of which a value must hold for the rule to run."""
    spare: Callable[[str, int, int, str], bool] | None = None
    """Given the value, a match's span and the secret it would mask: True to leave that
    match (evidence, e.g. the user@host an ssh command connects to is not an e-mail
    address to hide, a path after ``--private-key`` is where a key is, not the key)."""

    def apply(self, value: str, key: bytes | None = None) -> tuple[str, int]:
        """The value with this rule's matches masked, and how many were (the caller has
        checked the triggers)."""
        groups = self.pattern.groupindex
        keep, after = groups.get("keep"), groups.get("after")
        masked = 0

        def replace(m: Any) -> str:
            nonlocal masked
            start, end = m.span()
            head = m.end(keep) if keep is not None and m.start(keep) >= 0 else start
            tail = m.start(after) if after is not None and m.start(after) >= 0 else end
            secret = value[head:tail]
            if (
                _inside_mask(value, head)
                or secret.strip("'\"").startswith("[REDACTED:")
                or (self.spare is not None and self.spare(value, start, end, secret))
            ):
                return value[start:end]  # masked already, or evidence to keep
            masked += 1
            return value[start:head] + _mask(self.name, secret, key) + value[tail:end]

        new = self.pattern.sub(replace, value)
        return new, masked


def _inside_mask(value: str, position: int) -> bool:
    """Whether ``position`` is inside a mask already in the value (a mask's rule name,
    ``url_password``, must not read as a parameter to mask)."""
    opening = value.rfind("[REDACTED:", 0, position)
    return opening >= 0 and value.find("]", opening) >= position


def _mask(rule: str, secret: str, key: bytes | None) -> str:
    """``[REDACTED:<rule>:<tag>]``, the tag a keyed hash of the secret (8 hex digits), so
    that an analyst sees that two events used the same secret without learning it; a
    quoted secret keeps its quotes, and is hashed without them. No key, no tag: an
    unkeyed hash of a short password could be tested against guesses."""
    quote = secret[0] if len(secret) >= 2 and secret[0] == secret[-1] in "'\"" else ""
    if quote:
        secret = secret[1:-1]
    if key is None:
        return f"{quote}[REDACTED:{rule}]{quote}"
    tag = hmac.new(key, secret.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
    return f"{quote}[REDACTED:{rule}:{tag[:8]}]{quote}"


def build_rules(config: RedactConfig) -> list[Rule]:
    """The default rules (minus those the config turns off) and the config's own."""
    rules = [
        Rule(name, _compile(name, pattern), triggers, SPARE.get(name))
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

    def __init__(self, config: RedactConfig, key: bytes | None = None) -> None:
        self.config = config
        self.key = key
        """Keys the tags of masks (``_mask``); None: masks without a tag."""
        self.rules = build_rules(config)
        # One pass of an Aho-Corasick automaton over the lower-cased value finds every
        # trigger in it: most values hold none and cost no regex at all, and the others
        # run only the rules whose triggers they hold. (Over simulated events: 0.7 us,
        # where an alternation of the ~70 triggers took 1.8 us on RE2, 4.3 us on re.)
        self._triggers = ahocorasick.Automaton()
        rules_of: dict[str, set[int]] = {}
        for number, rule in enumerate(self.rules):
            for trigger in rule.triggers:
                rules_of.setdefault(trigger, set()).add(number)
        for trigger, numbers in rules_of.items():
            self._triggers.add_word(trigger, frozenset(numbers))
        self._always = frozenset(n for n, rule in enumerate(self.rules) if not rule.triggers)
        """Rules without triggers (an operator's own): they run on every value."""
        if rules_of:
            self._triggers.make_automaton()
        self.redactions: Counter[str] = Counter()
        """Values masked, by rule."""
        self._actor_fields = [f.split(".", 1)[1] for f in config.fields if f.startswith("actor.")]
        self._object = "object" in config.fields
        self._attributes = "attributes" in config.fields

    def _may_match(self, lowered: str) -> bool:
        if self._always:
            return True
        if self._triggers.kind != ahocorasick.AHOCORASICK:
            return False  # no trigger at all
        return next(self._triggers.iter(_unmasked(lowered)), None) is not None

    def _rules_for(self, lowered: str) -> frozenset[int]:
        """The numbers of the rules whose triggers the value holds (and the untriggered)."""
        found = set(self._always)
        if self._triggers.kind == ahocorasick.AHOCORASICK:
            for _, numbers in self._triggers.iter(_unmasked(lowered)):
                found |= numbers
        return frozenset(found)

    def mask(self, event: Event) -> bool:
        """Mask the event's secrets in place; True when a value changed."""
        if not self._may_match(self._joined(event).lower()):
            return False  # the common case: one pass per event, no rule can apply
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
        if not self._may_match(self._joined(event).lower()):
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
        numbers = self._rules_for(value.lower())
        if not numbers:
            return value
        for number, rule in enumerate(self.rules):
            if number not in numbers:
                continue
            new, count = rule.apply(value, self.key)
            if count and new != value:  # a masked secret masked again stays the same
                self.redactions[rule.name] += count
                found.append(f"{rule.name}@{where}")
                value = new
        return value


_MASK = re.compile(r"\[redacted:[a-z0-9_.-]*(?::[0-9a-f]*)?\]")


def _unmasked(lowered: str) -> str:
    """The lower-cased text without the masks already in it: a mask names its rule
    (``[redacted:secret_param]``), and those names hold trigger words; an event masked at
    the edge would otherwise run every rule again in the worker."""
    return _MASK.sub("", lowered) if "[redacted:" in lowered else lowered


def redaction_key(config: RedactConfig, home: Path) -> bytes:
    """The key of the masks' tags: ``redact.key``, else the key file (``redact.key_file``,
    default ``$AUDITPIPE_HOME/redact.key``, created 0600 with a random key on first use).
    Collectors and workers that should give one secret the same tag share the key."""
    if config.key is not None and config.key.get_secret_value():
        return config.key.get_secret_value().encode()
    path = config.key_file or home / "redact.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # made by another process meanwhile
            return path.read_text().strip().encode()
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
    return path.read_text().strip().encode()
