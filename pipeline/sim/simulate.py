"""A simulated sandbox fleet: realistic benign activity, as fast or as slow as asked.

Each sandbox belongs to a tenant and runs the usual work of a CI runner or an agent
sandbox: builds, package installs, file edits, test runs, API calls, logins, resource
samples. ``FleetSimulator.events(n)`` yields schema-v1 events with per-sandbox ``seq``.

>>> sim = FleetSimulator(sandboxes=3, seed=7)
>>> events = list(sim.events(100))
>>> {e["sandbox_id"] for e in events} == set(sim.sandbox_ids)
True
>>> [e["seq"] for e in events if e["sandbox_id"] == sim.sandbox_ids[0]][:4]
[1, 2, 3, 4]
>>> events[0]["category"], events[0]["action"]
('lifecycle', 'start')
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.schema.event import Event
from pipeline.sim.near_misses import NEAR_MISSES
from pipeline.sim.scenarios import SCENARIOS

TENANTS = ("acme", "globex", "initech", "umbrella", "hooli")
IMAGES = ("python:3.11-slim", "node:20", "golang:1.26", "rust:1.95", "ubuntu:24.04")
USERS = ("runner", "agent", "dev", "ci")

_SOURCES = (
    "src/main.py",
    "src/app/models.py",
    "src/app/views.py",
    "lib/util.go",
    "src/index.ts",
    "README.md",
    "tests/test_api.py",
    "Cargo.toml",
    "pkg/server.go",
)
_CI_SHELL = ("/bin/bash", "bash -e /workspace/.ci/build.sh")
"""The parent of the build and test steps: the CI job's script."""

_BUILD_CMDS = (
    ("make", "make -j2 all"),
    ("gcc", "gcc -O2 -c src/util.c -o build/util.o"),
    ("cargo", "cargo build --release"),
    ("go", "go build ./..."),
    ("npm", "npm run build"),
    ("python3", "python3 -m build"),
)
_TEST_CMDS = (
    ("pytest", "pytest -q tests/"),
    ("go", "go test ./..."),
    ("npm", "npm test"),
    ("cargo", "cargo test"),
)
_INSTALLS = (
    ("pip", "pip install -r requirements.txt", "pypi.org:443"),
    ("npm", "npm ci", "registry.npmjs.org:443"),
    ("apt-get", "apt-get install -y libssl-dev", "deb.debian.org:80"),
    ("cargo", "cargo fetch", "index.crates.io:443"),
)
_APIS = (
    "GET /api/v1/repos/{r}",
    "POST /api/v1/builds",
    "GET /api/v1/artifacts/{r}",
    "POST /v1/chat/completions",
    "GET /api/v1/secrets/list",
    "PUT /api/v1/status/{r}",
)


@dataclass(frozen=True)
class Sandbox:
    sandbox_id: str
    tenant: str
    image: str
    user: str
    uid: int

    @property
    def bucket(self) -> str:
        """The tenant's own artifact bucket, listed in the sandbox's inventory record."""
        return f"{self.tenant}-builds"

    @property
    def labels(self) -> dict[str, str]:
        """The labels of the sandbox's inventory record (``auditpipe inventory put``)."""
        return {"owned_destinations": self.bucket}


def _pick(rng: random.Random, options: tuple[Any, ...]) -> Any:
    return options[int(rng.random() * len(options))]


class FleetSimulator:
    """Generates the events of ``sandboxes`` sandboxes spread over ``tenants`` tenants."""

    def __init__(
        self,
        sandboxes: int,
        *,
        tenants: int = 3,
        seed: int | None = None,
        run_id: str | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.run_id = run_id or uuid.UUID(int=self.rng.getrandbits(128)).hex[:8]
        self.fleet = [
            Sandbox(
                sandbox_id=f"sb-{self.run_id}-{i:05d}",
                tenant=TENANTS[i % max(1, min(tenants, len(TENANTS)))],
                image=_pick(self.rng, IMAGES),
                user=_pick(self.rng, USERS),
                uid=1000 + i % 7,
            )
            for i in range(sandboxes)
        ]
        self.sandbox_ids = [sb.sandbox_id for sb in self.fleet]
        self._seq = dict.fromkeys(self.sandbox_ids, 0)
        self._pid = 1000
        self._activities: list[tuple[float, Callable[[Sandbox], Event]]] = [
            (0.25, self._exec_build),
            (0.10, self._exec_test),
            (0.30, self._file_io),
            (0.06, self._package_install),
            (0.10, self._api_call),
            (0.10, self._resource_sample),
            (0.03, self._login),
            (0.02, self._config_change),
            (0.02, self._export),
            (0.02, self._chmod),
        ]
        self._weights = [w for w, _ in self._activities]
        self._makers = [m for _, m in self._activities]

    def events(
        self, count: int, *, start_ms: int | None = None, scenarios: Sequence[str] = ()
    ) -> Iterator[Event]:
        """``count`` benign events, each sandbox starting with a lifecycle ``start`` event,
        plus the events of each named attack scenario (see ``pipeline.sim.scenarios``), the
        i-th scenario in sandbox i, spread over the stream."""
        clock = start_ms if start_ms is not None else time.time_ns() // 1_000_000
        started: set[str] = set()
        choose = self.rng.choices
        inject_at = {
            count * (i + 1) // (len(scenarios) + 1): (i, name) for i, name in enumerate(scenarios)
        }
        for n in range(count):
            if n in inject_at:
                index, name = inject_at[n]
                sandbox = self.fleet[index % len(self.fleet)]
                if sandbox.sandbox_id in started:
                    yield from self.scenario_events(
                        name, sandbox, clock + n // max(1, len(self.fleet))
                    )
            sandbox = self.fleet[n % len(self.fleet)]
            if sandbox.sandbox_id not in started:
                started.add(sandbox.sandbox_id)
                event = self._lifecycle(sandbox, "start")
            else:
                event = choose(self._makers, self._weights)[0](sandbox)
            event["ts"] = clock + n // max(1, len(self.fleet))
            yield self._finish(sandbox, event)

    def scenario_events(self, name: str, sb: Sandbox, end_ms: int) -> list[Event]:
        """The events of one attack scenario (``pipeline.sim.scenarios``) or benign near
        miss (``pipeline.sim.near_misses``) in sandbox sb, its last one at end_ms (never
        in the future of the stream around it). Tagged ``sim.scenario`` or
        ``sim.near_miss`` with the name."""
        if name in SCENARIOS:
            steps, tag = SCENARIOS[name](), "sim.scenario"
        elif name in NEAR_MISSES:
            steps, tag = NEAR_MISSES[name](), "sim.near_miss"
        else:
            known = ", ".join([*SCENARIOS, *NEAR_MISSES])
            raise ValueError(f"unknown scenario {name!r}; known: {known}")
        start_ms = end_ms - max(offset for offset, _ in steps)
        out = []
        for offset, fields in steps:
            spec = dict(fields["actor"])
            self._pid += 1
            event = {
                **fields,
                "actor": {
                    "user": spec.get("user", sb.user),
                    "uid": spec.get("uid"),
                    "pid": self._pid,
                    "ppid": 1,
                    "process": spec["process"],
                    "cmdline": spec["cmdline"],
                    "parent_process": spec.get("parent_process", ""),
                    "parent_cmdline": spec.get("parent_cmdline", ""),
                },
            }
            if "object" in fields:
                event["object"] = str(fields["object"]).replace("{bucket}", sb.bucket)
            event["actor"]["cmdline"] = event["actor"]["cmdline"].replace("{bucket}", sb.bucket)
            event["attributes"] = {**fields.get("attributes", {}), tag: name}
            finished = self._finish(sb, event)
            finished["ts"] = start_ms + offset
            out.append(finished)
        return out

    def with_inventory(self, events: list[Event]) -> list[Event]:
        """The events with their sandbox's inventory labels, as the worker's enrich stage
        gives them to the rules (for harnesses that run the engine without a worker)."""
        labels = {sb.sandbox_id: sb.labels for sb in self.fleet}
        for event in events:
            event["labels"] = dict(labels.get(event["sandbox_id"], {}))
        return events

    def _finish(self, sb: Sandbox, event: Event) -> Event:
        seq = self._seq[sb.sandbox_id] + 1
        self._seq[sb.sandbox_id] = seq
        event.update(
            event_id=str(uuid.uuid4()),
            tenant=sb.tenant,
            sandbox_id=sb.sandbox_id,
            seq=seq,
            prev_hash=None,
            hash=None,
        )
        event.setdefault("level", "info")
        event.setdefault("outcome", "success")
        event.setdefault("bytes", None)
        event.setdefault("attributes", {})
        event["attributes"]["image"] = sb.image
        return event

    def _actor(
        self, sb: Sandbox, process: str, cmdline: str, parent: tuple[str, str] = ("", "")
    ) -> dict[str, Any]:
        self._pid += 1
        return {
            "user": sb.user,
            "uid": sb.uid,
            "pid": self._pid,
            "ppid": 1,
            "process": process,
            "cmdline": cmdline,
            "parent_process": parent[0],
            "parent_cmdline": parent[1],
        }

    def _lifecycle(self, sb: Sandbox, action: str) -> Event:
        return {
            "category": "lifecycle",
            "action": action,
            "object": sb.image,
            "actor": self._actor(sb, "containerd-shim", "containerd-shim -namespace k8s"),
        }

    def _exec_build(self, sb: Sandbox) -> Event:
        process, cmdline = _pick(self.rng, _BUILD_CMDS)
        failed = self.rng.random() < 0.05
        return {
            "category": "process",
            "action": "exec",
            "object": f"/usr/bin/{process}",
            "actor": self._actor(sb, process, cmdline, _CI_SHELL),
            "outcome": "failure" if failed else "success",
            "level": "warning" if failed else "info",
            "attributes": {"cwd": "/workspace", "exit_code": "2" if failed else "0"},
        }

    def _exec_test(self, sb: Sandbox) -> Event:
        process, cmdline = _pick(self.rng, _TEST_CMDS)
        return {
            "category": "process",
            "action": "exec",
            "object": f"/usr/local/bin/{process}",
            "actor": self._actor(sb, process, cmdline, _CI_SHELL),
            "attributes": {"cwd": "/workspace"},
        }

    def _file_io(self, sb: Sandbox) -> Event:
        write = self.rng.random() < 0.4
        path = f"/workspace/{_pick(self.rng, _SOURCES)}"
        return {
            "category": "file",
            "action": "write" if write else "read",
            "object": path,
            "bytes": int(self.rng.random() * 65536),
            "level": "info" if write else "debug",
            "actor": self._actor(sb, "python3", "python3 agent.py"),
        }

    def _package_install(self, sb: Sandbox) -> Event:
        process, cmdline, host = _pick(self.rng, _INSTALLS)
        return {
            "category": "network",
            "action": "connect",
            "object": host,
            "actor": self._actor(sb, process, cmdline),
            "attributes": {"protocol": "tcp", "direction": "outbound"},
        }

    def _api_call(self, sb: Sandbox) -> Event:
        api = _pick(self.rng, _APIS).format(r=int(self.rng.random() * 500))
        denied = self.rng.random() < 0.03
        return {
            "category": "api",
            "action": api.split(" ", 1)[0].lower(),
            "object": api,
            "outcome": "denied" if denied else "success",
            "level": "notice" if denied else "info",
            "actor": self._actor(sb, "python3", "python3 agent.py"),
            "attributes": {"status": "403" if denied else "200"},
        }

    def _resource_sample(self, sb: Sandbox) -> Event:
        return {
            "category": "resource",
            "action": "sample",
            "object": "cgroup",
            "level": "debug",
            "actor": self._actor(sb, "collector", "auditpipe-collector"),
            "attributes": {
                "cpu_pct": f"{self.rng.random() * 80:.1f}",
                "mem_mb": str(200 + int(self.rng.random() * 1800)),
            },
        }

    def _login(self, sb: Sandbox) -> Event:
        return {
            "category": "auth",
            "action": "login",
            "object": "sshd",
            "actor": self._actor(sb, "sshd", "sshd: runner [priv]"),
            "attributes": {"method": "publickey"},
        }

    def _config_change(self, sb: Sandbox) -> Event:
        return {
            "category": "config",
            "action": "set",
            "object": "/workspace/.env",
            "level": "notice",
            "actor": self._actor(sb, "bash", "bash -c 'echo >> .env'"),
        }

    def _export(self, sb: Sandbox) -> Event:
        return {
            "category": "data_transfer",
            "action": "upload",
            "object": "https://artifacts.internal/upload",
            "level": "notice",
            "bytes": int(self.rng.random() * 5_000_000),
            "actor": self._actor(sb, "curl", "curl -T dist/app.tar.gz"),
        }

    def _chmod(self, sb: Sandbox) -> Event:
        return {
            "category": "permission",
            "action": "chmod",
            "object": "/workspace/build/app",
            "actor": self._actor(sb, "chmod", "chmod +x build/app"),
            "attributes": {"mode": "0755"},
        }


async def run_paced(
    sim: FleetSimulator,
    publish: Callable[[Event], Any],
    *,
    rate: float,
    duration_s: float,
    on_tick: Callable[[int], None] | None = None,
    scenarios: Sequence[str] = (),
) -> int:
    """Emit ``rate`` events/s for ``duration_s`` seconds (rate 0: as fast as possible)."""
    total = int(rate * duration_s) if rate > 0 else 0
    stream = sim.events(total if total else 1 << 62, scenarios=scenarios)
    sent = 0
    started = time.monotonic()
    tick = 0.05
    while True:
        elapsed = time.monotonic() - started
        if elapsed >= duration_s or (total and sent >= total):
            break
        due = total if not rate else min(total, int(rate * (elapsed + tick)))
        target = sent + 5000 if not rate else due
        while sent < target:
            await publish(next(stream))
            sent += 1
        if on_tick is not None:
            on_tick(sent)
        if rate:
            await asyncio.sleep(max(0.0, started + elapsed + tick - time.monotonic()))
    return sent
