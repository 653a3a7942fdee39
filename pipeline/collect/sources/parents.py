"""The parent process of an event, for the rules and the Sigma rules that test it
(``ParentImage``, ``ParentCommandLine``): ``actor.parent_process`` and
``actor.parent_cmdline`` (schema v2).

Sources report the acting process with its parent's pid only (auditd) or with the
parent's fields when asked (Falco's ``proc.pexepath`` / ``proc.pcmdline``). A source
that sees the execs fills the gap itself: :class:`ProcessTable` remembers what each pid
last executed, and an event whose ``ppid`` it knows gets its parent's program and
command line.

Invariants: a pid is known within its tenant's sandbox only (the table is keyed by
tenant, sandbox id and pid): one collector may see many sandboxes (Falco on a host of
containers, each with its own pid namespace), and a pid of one sandbox must never lend
its program or command line to another sandbox's event (another tenant's, perhaps), even
where two tenants name a sandbox alike; the table is bounded (``size`` pids; the least
recently executed leave first), so a sandbox that forks without end costs a fixed amount
of memory; a parent the table does not know adds nothing (never a guess); what the
source itself said of the parent is kept.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

DEFAULT_SIZE = 65_536


class ProcessTable:
    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self.size = size
        self._programs: OrderedDict[tuple[str, str, int], tuple[str, str]] = OrderedDict()

    def executed(self, event: dict[str, Any], pid: int | None, exe: str, cmdline: str) -> None:
        """``pid`` of the event's sandbox now runs ``exe`` with ``cmdline``."""
        if pid is None:
            return
        key = (*_sandbox(event), pid)
        self._programs[key] = (exe, cmdline)
        self._programs.move_to_end(key)
        if len(self._programs) > self.size:
            self._programs.popitem(last=False)

    def add_parent(self, event: dict[str, Any]) -> None:
        """The parent's program and command line, where the event's ``ppid`` is known
        and the source left them empty."""
        actor = event.get("actor")
        if not isinstance(actor, dict) or actor.get("ppid") is None:
            return
        known = self._programs.get((*_sandbox(event), actor["ppid"]))
        if known is None:
            return
        exe, cmdline = known
        if not actor.get("parent_process"):
            actor["parent_process"] = exe
        if not actor.get("parent_cmdline"):
            actor["parent_cmdline"] = cmdline

    def follow(self, event: dict[str, Any]) -> None:
        """Both at once, for a mapped event: its parent first, then, for an exec, what
        its process now runs."""
        self.add_parent(event)
        if event.get("action") == "exec":
            actor = event.get("actor") or {}
            self.executed(
                event, actor.get("pid"), str(event.get("object") or ""), actor.get("cmdline") or ""
            )


def _sandbox(event: dict[str, Any]) -> tuple[str, str]:
    return str(event.get("tenant") or ""), str(event.get("sandbox_id") or "")
