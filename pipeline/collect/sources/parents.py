"""The parent process of an event, for the rules and the Sigma rules that test it
(``ParentImage``, ``ParentCommandLine``): ``attributes["parent.exe"]`` and
``attributes["parent.cmdline"]``.

Sources report the acting process with its parent's pid only (auditd) or with the
parent's fields when asked (Falco's ``proc.pexepath`` / ``proc.pcmdline``). A source
that sees the execs fills the gap itself: :class:`ProcessTable` remembers what each pid
last executed, and an event whose ``ppid`` it knows gets its parent's program and
command line.

Invariants: the table is bounded (``size`` pids; the least recently executed leave
first), so a sandbox that forks without end costs a fixed amount of memory; a parent
the table does not know adds nothing (never a guess); attributes the source already
has are kept.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

PARENT_EXE = "parent.exe"
PARENT_CMDLINE = "parent.cmdline"
DEFAULT_SIZE = 65_536


class ProcessTable:
    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self.size = size
        self._programs: OrderedDict[int, tuple[str, str]] = OrderedDict()

    def executed(self, pid: int | None, exe: str, cmdline: str) -> None:
        """``pid`` now runs ``exe`` with ``cmdline``."""
        if pid is None:
            return
        self._programs[pid] = (exe, cmdline)
        self._programs.move_to_end(pid)
        if len(self._programs) > self.size:
            self._programs.popitem(last=False)

    def add_parent(self, event: dict[str, Any]) -> None:
        """The parent's program and command line, where the event's ``ppid`` is known."""
        ppid = (event.get("actor") or {}).get("ppid")
        known = self._programs.get(ppid) if ppid is not None else None
        if known is None:
            return
        attributes = event.setdefault("attributes", {})
        exe, cmdline = known
        if exe:
            attributes.setdefault(PARENT_EXE, exe)
        if cmdline:
            attributes.setdefault(PARENT_CMDLINE, cmdline)

    def follow(self, event: dict[str, Any]) -> None:
        """Both at once, for a mapped event: its parent first, then, for an exec, what
        its process now runs."""
        self.add_parent(event)
        if event.get("action") == "exec":
            actor = event.get("actor") or {}
            self.executed(
                actor.get("pid"), str(event.get("object") or ""), actor.get("cmdline") or ""
            )
