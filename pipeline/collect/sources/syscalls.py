"""The schema's vocabulary for syscalls, shared by every source that sees them (auditd,
Falco), so the rules, written for ``exec``/``read``/``write``/``connect``, match the
same activity whichever source saw it.

| syscall | category | action |
|---|---|---|
| execve, execveat | process | exec |
| open, openat, openat2, creat | file | read, or write when opened for writing |
| unlink, unlinkat, rmdir | file | delete |
| rename, renameat, renameat2 / mkdir, mkdirat | file | rename / create |
| connect, sendto / bind, listen / accept, accept4 | network | connect / bind / accept |
| chmod, fchmod, fchmodat / chown, fchown, lchown, fchownat | permission | chmod / chown |
| setuid, setgid, setreuid, setregid, setresuid, setresgid, capset | permission | its name |
| mount, umount, umount2, ptrace, init_module, finit_module | config | its name |
| setns, unshare | config | its name |
| clone, clone3, fork, vfork | process | its name |

A syscall outside the table keeps its name as the action (category ``process`` for
auditd, ``config`` for Falco's non-syscall sources); the source keeps the original name
in an attribute (``auditd.syscall``, ``falco.evt.type``).
"""

from __future__ import annotations

OPEN = frozenset(("open", "openat", "openat2", "creat"))
WRITE_FLAGS = 0o1 | 0o2 | 0o100 | 0o1000 | 0o2000
"""O_WRONLY, O_RDWR, O_CREAT, O_TRUNC, O_APPEND (Linux): an open that may change the file."""
WRITE_FLAG_NAMES = frozenset(("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND"))

ACTIONS: dict[str, tuple[str, str]] = {
    **dict.fromkeys(("execve", "execveat"), ("process", "exec")),
    **dict.fromkeys(OPEN, ("file", "open")),
    **dict.fromkeys(("unlink", "unlinkat", "rmdir"), ("file", "delete")),
    **dict.fromkeys(("rename", "renameat", "renameat2"), ("file", "rename")),
    **dict.fromkeys(("mkdir", "mkdirat"), ("file", "create")),
    **dict.fromkeys(("connect", "sendto"), ("network", "connect")),
    **dict.fromkeys(("bind", "listen"), ("network", "bind")),
    **dict.fromkeys(("accept", "accept4"), ("network", "accept")),
    **dict.fromkeys(("chmod", "fchmod", "fchmodat"), ("permission", "chmod")),
    **dict.fromkeys(("chown", "fchown", "lchown", "fchownat"), ("permission", "chown")),
    **{
        name: ("permission", name)
        for name in ("setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "capset")
    },
    **{
        name: ("config", name)
        for name in (
            "mount",
            "umount",
            "umount2",
            "ptrace",
            "init_module",
            "finit_module",
            "setns",
            "unshare",
        )
    },
    **{name: ("process", name) for name in ("clone", "clone3", "fork", "vfork")},
}
