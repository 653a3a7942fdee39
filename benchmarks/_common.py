"""Small helpers shared by the benchmarks."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path


def process_memory_mb(pid: int | str = "self", field: str = "VmRSS") -> float:
    """A memory figure of a process from /proc (VmRSS: now; VmHWM: its peak), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def compare_modes(
    modes: tuple[str, ...], runs: int, events: int, one_run: Callable[[str], tuple[float, float]]
) -> None:
    """Runs ``one_run(mode)`` (publish and worker events/s) for each mode, interleaved so
    the shared machine's noise falls on all modes alike, and prints the medians with their
    ratio to the first mode."""
    figures: dict[str, list[tuple[float, float]]] = {mode: [] for mode in modes}
    for run in range(runs):
        for mode in modes:
            figures[mode].append(one_run(mode))
            print(
                f"run {run + 1}, {mode}: publish {figures[mode][-1][0]:,.0f}, "
                f"worker {figures[mode][-1][1]:,.0f} events/s",
                flush=True,
            )
    base_pub = statistics.median(p for p, _ in figures[modes[0]])
    base_work = statistics.median(w for _, w in figures[modes[0]])
    print(f"\nmedians of {runs} runs, {events:,} events each (events/s, ratio to {modes[0]})")
    for mode in modes:
        pub = statistics.median(p for p, _ in figures[mode])
        work = statistics.median(w for _, w in figures[mode])
        print(
            f"{mode:<15} publish {pub:>9,.0f} ({pub / base_pub:.2f})  "
            f"worker {work:>9,.0f} ({work / base_work:.2f})"
        )
