"""A local service run as a detached process: pid file, port checks, start-up wait."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


class StackError(Exception):
    """A local service cannot be started or stopped; the message says why and what to do."""


def port_is_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (all held open while chosen, so none is picked twice)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when a server could bind host:port now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        return ""
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


@dataclass
class ManagedProcess:
    """One service process of the local stack, known by its pid file."""

    name: str
    pid_file: Path
    log_file: Path
    ports: Sequence[int]
    cmdline_marker: str
    """A string in the process's command line: a pid reused by another program is not ours."""
    _spawned: subprocess.Popen[bytes] | None = None

    def pid(self) -> int | None:
        """The pid of our running process, or None (stale pid files are removed)."""
        if self._spawned is not None:
            # Started by this object: ask the child itself. (Its command line is still
            # Python's until it has exec'd, so the marker check would be wrong here.)
            if self._spawned.poll() is None:
                return self._spawned.pid
            self._spawned = None
            self.pid_file.unlink(missing_ok=True)
            return None
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except FileNotFoundError:
            cmdline = b""
        if self.cmdline_marker.encode() not in cmdline or _is_zombie(pid):
            self.pid_file.unlink(missing_ok=True)
            return None
        return pid

    def check_ports_free(self) -> None:
        for port in self.ports:
            if not port_is_free(port):
                raise StackError(
                    f"{self.name}: port {port} on 127.0.0.1 is already in use by another "
                    f"process. Stop that process, or choose other ports in the stack "
                    f"section of the config (see `auditpipe config`)."
                )

    def spawn(self, argv: Sequence[str], cwd: Path, env: dict[str, str] | None = None) -> int:
        """Start the process detached from this one (its own session), logging to log_file."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                list(argv),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
            )
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.write_text(str(proc.pid))
        self._spawned = proc
        return proc.pid

    def wait_ready(self, is_ready: Callable[[], bool], timeout_s: float) -> float:
        """Poll is_ready until it holds; returns the seconds waited."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if self.pid() is None:
                raise StackError(
                    f"{self.name} exited during start-up; last lines of {self.log_file}:\n"
                    f"{tail(self.log_file)}"
                )
            if is_ready():
                return time.monotonic() - started
            time.sleep(0.2)
        raise StackError(
            f"{self.name} did not answer within {timeout_s:.0f} s; see {self.log_file}:\n"
            f"{tail(self.log_file)}"
        )

    def stop(self, timeout_s: float = 30.0) -> bool:
        """SIGTERM, then SIGKILL after timeout_s. False when it was not running."""
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.pid() is None:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
        self.pid_file.unlink(missing_ok=True)
        return True

    def kill(self) -> bool:
        """SIGKILL at once (a crash, for tests). False when it was not running."""
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGKILL)
        while self.pid() is not None:
            time.sleep(0.05)
        if self._spawned is not None:
            self._spawned.wait()  # reap it
        self.pid_file.unlink(missing_ok=True)
        return True


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"
