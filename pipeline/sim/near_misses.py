"""Benign activity that looks like an attack at a glance: the near misses a detection
pack must stay quiet on (``benchmarks/false_alerts.py``, the pack's tests).

Each is what build and agent sandboxes do every day, written from the tools' own usage:
a build retrying a registry login, ``chmod +x`` of its outputs, an installer fetched
with ``curl -o`` and run by ``sh``, ``ssh``/``git`` reading ``known_hosts``, artifacts
uploaded to the approved artifact store, a test suite opening sockets, ``sudo`` refused
for a missing password in CI. Same step format as the attack scenarios: (offset in ms,
event fields); the simulator tags each event ``sim.near_miss``.
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.sim.scenarios import Step, _proc


def registry_login_retries() -> list[Step]:
    """A build's credentials expired: npm and docker fail to log in, retried quickly."""
    npm = _proc("npm", "npm login --registry https://registry.npmjs.org/")
    docker = _proc("docker", "docker login ghcr.io -u ci-bot --password-stdin")
    return [
        (
            6000 * n,
            {
                "category": "auth",
                "action": "login",
                "object": "registry.npmjs.org" if n % 2 else "ghcr.io",
                "outcome": "failure",
                "level": "warning",
                "actor": npm if n % 2 else docker,
                "attributes": {"reason": "401 Unauthorized"},
            },
        )
        for n in range(7)
    ]


def build_outputs_made_executable() -> list[Step]:
    commands = ("chmod +x target/release/app", "chmod 755 dist/cli", "chmod -R u+rwX build")
    return [
        (
            400 * n,
            {
                "category": "permission",
                "action": "chmod",
                "object": f"/workspace/{command.rsplit(' ', 1)[-1]}",
                "actor": _proc("chmod", command),
                "attributes": {"mode": "0755"},
            },
        )
        for n, command in enumerate(commands)
    ]


def installer_fetched_and_run() -> list[Step]:
    url = "https://sh.rustup.rs"
    return [
        (
            0,
            {
                "category": "network",
                "action": "connect",
                "object": "static.rust-lang.org:443",
                "actor": _proc("curl", f"curl --proto =https -sSf -o /tmp/rustup-init.sh {url}"),
            },
        ),
        (
            900,
            {
                "category": "file",
                "action": "write",
                "object": "/tmp/rustup-init.sh",
                "actor": _proc("curl", f"curl --proto =https -sSf -o /tmp/rustup-init.sh {url}"),
            },
        ),
        (
            1500,
            {
                "category": "process",
                "action": "exec",
                "object": "/usr/bin/sh",
                "actor": _proc("sh", "sh /tmp/rustup-init.sh -y --profile minimal"),
            },
        ),
    ]


def known_hosts_read() -> list[Step]:
    return [
        (
            300 * n,
            {
                "category": "file",
                "action": "read",
                "object": path,
                "actor": _proc(process, cmdline),
            },
        )
        for n, (process, cmdline, path) in enumerate(
            (
                ("ssh", "ssh -T git@github.com", "/home/runner/.ssh/known_hosts"),
                ("git", "git fetch origin", "/home/runner/.ssh/known_hosts"),
                ("ssh", "ssh -o BatchMode=yes deploy@10.2.0.5 true", "/etc/ssh/ssh_known_hosts"),
            )
        )
    ]


def artifacts_uploaded() -> list[Step]:
    """A release build pushes 1.2 GB of images and archives to the artifact store."""
    return [
        (
            20_000 * n,
            {
                "category": "data_transfer",
                "action": "upload",
                "object": f"https://artifacts.internal/upload/release-{n}.tar.zst",
                "bytes": 400_000_000,
                "actor": _proc(
                    "curl", "curl -T release.tar.zst https://artifacts.internal/upload/"
                ),
            },
        )
        for n in range(3)
    ]


def own_bucket_uploads() -> list[Step]:
    """A nightly build uploads 1.8 GB of caches and one 1.2 GB image to the tenant's own
    bucket (``{bucket}``: listed in the sandbox's inventory record as an owned
    destination, ``labels.owned_destinations``): over both exfiltration thresholds, to
    a destination that is not the shared artifact store, and still benign."""
    uploads = [(60_000 * n, 600_000_000, f"cache-{n}.tar.zst") for n in range(3)]
    uploads.append((200_000, 1_200_000_000, "image.oci.tar"))
    return [
        (
            offset,
            {
                "category": "data_transfer",
                "action": "upload",
                "object": f"s3://{{bucket}}/nightly/{name}",
                "bytes": size,
                "actor": _proc("aws", f"aws s3 cp {name} s3://{{bucket}}/nightly/"),
            },
        )
        for offset, size, name in uploads
    ]


def tests_open_sockets() -> list[Step]:
    return [
        (
            0,
            {
                "category": "process",
                "action": "exec",
                "object": "/usr/bin/python3",
                "actor": _proc("python3", "python3 -m pytest tests/test_socket_server.py -x"),
            },
        ),
        (
            200,
            {
                "category": "network",
                "action": "connect",
                "object": "127.0.0.1:8000",
                "actor": _proc("python3", "python3 -m pytest tests/test_socket_server.py -x"),
            },
        ),
        (
            400,
            {
                "category": "process",
                "action": "exec",
                "object": "/usr/bin/node",
                "actor": _proc("node", "node -e \"require('child_process').execSync('make')\""),
            },
        ),
    ]


def sudo_refused_in_ci() -> list[Step]:
    """``sudo -n`` in a job without a password: refused, twice, then the job gives up."""
    return [
        (
            1000 * n,
            {
                "category": "auth",
                "action": "auth",
                "object": "sudo",
                "outcome": "failure",
                "actor": _proc("sudo", "sudo -n apt-get install -y jq"),
            },
        )
        for n in range(2)
    ]


NEAR_MISSES: dict[str, Callable[[], list[Step]]] = {
    "registry-login-retries": registry_login_retries,
    "build-outputs-made-executable": build_outputs_made_executable,
    "installer-fetched-and-run": installer_fetched_and_run,
    "known-hosts-read": known_hosts_read,
    "artifacts-uploaded": artifacts_uploaded,
    "own-bucket-uploads": own_bucket_uploads,
    "tests-open-sockets": tests_open_sockets,
    "sudo-refused-in-ci": sudo_refused_in_ci,
}
