"""What the SIEM shapes share: times in milliseconds, severities, ATT&CK tags.

Times arrive as epoch milliseconds (JSON, the ClickHouse export) or as aware
``datetime`` values (Avro ``timestamp-millis`` decoded); every shape wants milliseconds.

The rules tag techniques the Sigma way (``attack.t1059.004``, ``attack.execution``);
``attacks`` turns them into (tactic, technique, sub-technique) triples with ATT&CK ids.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

LEVEL_SEVERITY = {"debug": 1, "info": 1, "notice": 2, "warning": 3, "error": 4, "critical": 5}
"""Event level -> OCSF severity_id (1 Informational .. 5 Critical)."""
ALERT_SEVERITY = {"low": 2, "medium": 3, "high": 4, "critical": 5}
"""Alert severity -> OCSF severity_id."""
SEVERITY_NAMES = {0: "Unknown", 1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical"}

TACTICS = {
    "reconnaissance": ("TA0043", "Reconnaissance"),
    "resource_development": ("TA0042", "Resource Development"),
    "initial_access": ("TA0001", "Initial Access"),
    "execution": ("TA0002", "Execution"),
    "persistence": ("TA0003", "Persistence"),
    "privilege_escalation": ("TA0004", "Privilege Escalation"),
    "defense_evasion": ("TA0005", "Defense Evasion"),
    "credential_access": ("TA0006", "Credential Access"),
    "discovery": ("TA0007", "Discovery"),
    "lateral_movement": ("TA0008", "Lateral Movement"),
    "collection": ("TA0009", "Collection"),
    "command_and_control": ("TA0011", "Command and Control"),
    "exfiltration": ("TA0010", "Exfiltration"),
    "impact": ("TA0040", "Impact"),
}
"""Sigma's tactic tags -> ATT&CK Enterprise tactic id and name."""

_TECHNIQUE = re.compile(r"attack\.(t[0-9]{4})(?:\.([0-9]{3}))?\Z")
"""A technique tag, whole (``$`` would let a trailing newline through; ``\\Z`` does not)."""


def millis(value: Any) -> int:
    """Epoch milliseconds of an int or an aware datetime."""
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return int(value)


@dataclass(frozen=True)
class Technique:
    uid: str
    """``T1059`` (the parent technique of a sub-technique)."""
    sub_uid: str | None
    """``T1059.004`` or None."""


def techniques(tags: Any) -> list[Technique]:
    """The ATT&CK techniques among a rule's tags, in order, without repeats."""
    found: list[Technique] = []
    for tag in tags or ():
        match = _TECHNIQUE.match(str(tag).lower())
        if match:
            uid = match.group(1).upper()
            sub = f"{uid}.{match.group(2)}" if match.group(2) else None
            technique = Technique(uid, sub)
            if technique not in found:
                found.append(technique)
    return found


def tactics(tags: Any) -> list[tuple[str, str]]:
    """The ATT&CK tactics (id, name) among a rule's tags, in order, without repeats."""
    found: list[tuple[str, str]] = []
    for tag in tags or ():
        text = str(tag).lower()
        tactic = TACTICS.get(text.removeprefix("attack.")) if text.startswith("attack.") else None
        if tactic and tactic not in found:
            found.append(tactic)
    return found
