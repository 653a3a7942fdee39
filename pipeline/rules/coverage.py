"""Which ATT&CK techniques and tactics the rules in force cover, and the same as an
ATT&CK Navigator layer (the JSON format detection teams compare packs with).

A rule covers what its ``attack.*`` tags name (Sigma's convention: ``attack.t1059.004``,
``attack.execution``); only enabled rules count. A sub-technique is listed as itself
(``T1059.004``); its parent is listed only for rules tagged with the parent. The score
of a technique in the layer is the number of rules covering it, the comment their ids.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.rules.model import Rule
from pipeline.siem.common import tactics, techniques

NAVIGATOR_VERSIONS = {"attack": "16", "navigator": "5.1.0", "layer": "4.5"}


@dataclass
class Coverage:
    techniques: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    """Technique id (``T1059`` or ``T1059.004``) -> the ids of the rules covering it."""
    tactics: dict[tuple[str, str], list[str]] = field(default_factory=lambda: defaultdict(list))
    """(tactic id, name) -> the ids of the rules tagged with it."""
    untagged: list[str] = field(default_factory=list)
    """Enabled rules that name no technique."""
    rules: int = 0


def coverage(rules: Sequence[Rule]) -> Coverage:
    found = Coverage()
    for rule in rules:
        if not rule.enabled:
            continue
        found.rules += 1
        named = techniques(rule.tags)
        for technique in named:
            found.techniques[technique.sub_uid or technique.uid].append(rule.id)
        for tactic in tactics(rule.tags):
            found.tactics[tactic].append(rule.id)
        if not named:
            found.untagged.append(rule.id)
    return found


def navigator_layer(found: Coverage, name: str = "auditpipe rules") -> dict[str, Any]:
    top = max((len(ids) for ids in found.techniques.values()), default=1)
    return {
        "name": name,
        "versions": NAVIGATOR_VERSIONS,
        "domain": "enterprise-attack",
        "description": f"{len(found.techniques)} techniques covered by {found.rules} "
        "enabled auditpipe rules (score: rules covering the technique)",
        "filters": {"platforms": ["Linux", "Containers"]},
        "sorting": 3,
        "hideDisabled": False,
        "techniques": [
            {
                "techniqueID": uid,
                "score": len(ids),
                "comment": "rules: " + ", ".join(sorted(ids)),
                "enabled": True,
                "showSubtechniques": "." in uid,
            }
            for uid, ids in sorted(found.techniques.items())
        ],
        "gradient": {"colors": ["#c6dbef", "#08519c"], "minValue": 0, "maxValue": top},
        "legendItems": [],
        "metadata": [],
        "showTacticRowBackground": False,
        "selectTechniquesAcrossTactics": True,
        "selectSubtechniquesWithParent": False,
    }
