"""Small helpers shared by the benchmarks."""

from __future__ import annotations

from pathlib import Path


def process_memory_mb(pid: int | str = "self", field: str = "VmRSS") -> float:
    """A memory figure of a process from /proc (VmRSS: now; VmHWM: its peak), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")
