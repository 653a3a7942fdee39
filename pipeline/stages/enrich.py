"""Enrich stage: join each event with its sandbox in the inventory, and normalise severity.

The inventory (compacted topic ``audit.sandboxes``, written by ``auditpipe inventory``)
maps a sandbox to its owner, environment, image, labels and creation time; every worker
holds all of it (``pipeline/worker/inventory.py``). A sandbox is named by its tenant *and* its
id: two tenants may use the same sandbox names, and an event naming another tenant's
sandbox must not gain that tenant's owner, environment and labels (nor, through the
environment, its level policy). An event gains ``owner``, ``environment``, ``image``,
``labels`` and ``sandbox_known``. An event from a sandbox the inventory does not know
(under the event's tenant) is kept, with ``environment = "unknown"`` and
``sandbox_known = False``, and counted.

Severity (low, medium, high, critical) is normalised from the level, then raised by what
happened:

| condition | at least |
|---|---|
| level debug or info / notice or warning / error / critical | low / medium / high / critical |
| outcome denied, or an auth failure | medium |
| category permission (chmod, chown, setuid, capset, ...) | medium |
| config change, or a process running as uid 0 with outcome denied | medium |

>>> ctx = BatchContext()
>>> stage = EnrichStage(StaticInventory({("acme", "sb-1"): SandboxInfo("acme", "ana",
...     "prod-replica", "python:3.11", {"team": "ml"}, 0)}))
>>> events = stage.process([{"tenant": "acme", "sandbox_id": "sb-1", "level": "info",
...     "outcome": "denied", "category": "file", "actor": {"uid": 1000}}, {"tenant": "evil",
...     "sandbox_id": "sb-1", "level": "error", "outcome": "success", "category": "process",
...     "actor": {"uid": 0}}], ctx)
>>> [(e["environment"], e["owner"], e["sandbox_known"], e["severity"]) for e in events]
[('prod-replica', 'ana', True, 'medium'), ('unknown', '', False, 'high')]
>>> ctx.counted("events_unknown_sandbox")
1
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from pipeline.schema.event import Event
from pipeline.stages.base import BatchContext, StageBase

SEVERITIES = ("low", "medium", "high", "critical")
_LEVEL_SEVERITY = {"debug": 0, "info": 0, "notice": 1, "warning": 1, "error": 2, "critical": 3}
UNKNOWN = "unknown"


@dataclass(frozen=True)
class SandboxInfo:
    tenant: str
    owner: str
    environment: str
    image: str
    labels: dict[str, str] = field(default_factory=dict)
    created_at: int = 0


class Inventory(Protocol):
    def get(self, tenant: str, sandbox_id: str) -> SandboxInfo | None: ...


class StaticInventory:
    """An inventory held in a dict keyed by (tenant, sandbox_id) (tests, examples)."""

    def __init__(self, sandboxes: dict[tuple[str, str], SandboxInfo]) -> None:
        self.sandboxes = sandboxes

    def get(self, tenant: str, sandbox_id: str) -> SandboxInfo | None:
        return self.sandboxes.get((tenant, sandbox_id))


def severity(event: Event) -> str:
    rank = _LEVEL_SEVERITY.get(event["level"], 0)
    category = event["category"]
    if rank < 1 and (
        event["outcome"] == "denied"
        or category == "permission"
        or category == "config"
        or (category == "auth" and event["outcome"] == "failure")
    ):
        rank = 1
    return SEVERITIES[rank]


class EnrichStage(StageBase):
    name = "enrich"

    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory

    def process(self, events: list[Event], ctx: BatchContext) -> list[Event]:
        found: dict[tuple[str, str], SandboxInfo | None] = {}
        unknown = 0
        for event in events:
            sandbox = (event["tenant"], event["sandbox_id"])
            if sandbox in found:
                info = found[sandbox]
            else:
                info = found[sandbox] = self.inventory.get(*sandbox)
            if info is None:
                event.update(
                    owner="", environment=UNKNOWN, image="", labels={}, sandbox_known=False
                )
                unknown += 1
            else:
                event.update(
                    owner=info.owner,
                    environment=info.environment,
                    image=info.image,
                    labels=info.labels,
                    sandbox_known=True,
                )
            event["severity"] = severity(event)
        ctx.count("events_unknown_sandbox", unknown)
        return events
