"""CPU cost of hostile input: what one sandbox can make the worker spend per event.

    python benchmarks/adversarial.py [--window-events 100000] [--value-kb 64]

Inputs a compromised sandbox can send, built to hit the worst case of each part:

* redaction: 64 KB values built to make a backtracking engine try every start position
  against a long run (``a-a-a-...@`` for the e-mail rule, ``aaaa...://`` for the URL
  password rule, and similar runs for the others), each masked by the redact stage; the
  same values through Python's ``re`` with the same patterns, in the same run, for the
  ratio (``--no-python-re`` skips that part, which takes seconds per value);
* threshold windows: --window-events events of one key inside one window, in order, for
  a count, a sum and a distinct-count rule that never fire (the distinct one sees one
  value; the sum one zeros), then the same number of late events (each older than the
  last), which are checked against windows of up to rules.max_window_events entries;
* sequence windows: the same number of first-step events of an ordered two-step rule.

Printed per case: events, total seconds, median and worst microseconds per event.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config import RedactConfig
from pipeline.redaction import DEFAULT_RULES
from pipeline.rules.language import Match, Sequence, Step, Threshold
from pipeline.rules.sequences import SequenceWindows
from pipeline.rules.thresholds import ThresholdWindows
from pipeline.stages.redact import RedactStage

KEY = ("tenant", "sb-1")


def hostile_values(size: int) -> dict[str, str]:
    """rule -> a value of ``size`` bytes built to backtrack on that rule."""
    return {
        "email": ("a-" * size)[: size - 1] + "@",
        "url_password": "a" * (size - 3) + "://",
        "url_password_user": "x://" + "u" * (size - 4),
        "secret_param": ("password " * size)[:size],
        "bearer_token": ("bearer " * size)[:size],
        "private_key": ("-----BEGIN " + "A" * 60 + " ") * (size // 72),
        "aws_secret_key": ("aws_secret_access_key=" + "A" * 39 + " ") * (size // 62),
    }


def timed(calls: list[Callable[[], Any]]) -> tuple[float, float, float]:
    """(total s, median us, worst us) of the calls, each timed alone."""
    costs = []
    for call in calls:
        started = time.perf_counter()
        call()
        costs.append(time.perf_counter() - started)
    return sum(costs), statistics.median(costs) * 1e6, max(costs) * 1e6


def row(case: str, events: int, figures: tuple[float, float, float]) -> None:
    total, median, worst = figures
    print(f"| {case} | {events:,} | {total:.3f} | {median:,.1f} | {worst:,.1f} |", flush=True)


def redaction(size: int, python_re: bool) -> None:
    stage = RedactStage(RedactConfig())
    for name, value in hostile_values(size).items():
        event = {"actor": {"user": "", "cmdline": value}, "object": "", "attributes": {}}
        row(f"redact (RE2) {name}", 1, timed([lambda e=event: stage.masked(e)]))
        if python_re:
            rule = name if name in DEFAULT_RULES else "url_password"
            pattern = re.compile(DEFAULT_RULES[rule][0].replace("(?P<after>@)", "(?=@)"))
            row(f"Python re {name}", 1, timed([lambda p=pattern, v=value: p.subn("X", v)]))


def threshold(aggregate: str, events: int) -> None:
    spec = Threshold(aggregate, None if aggregate == "count" else "x", "gte", 1e18, 60_000, ())
    windows = ThresholdWindows(spec, lateness_ms=60_000)
    value: Any = "same" if aggregate == "distinct" else 0.0
    # All inside one 60 s window: in order, then each event older than the one before.
    in_order = [
        (lambda n=n: windows.add(KEY, n * 50_000 // events, value, f"e{n}", 0))
        for n in range(events)
    ]
    row(f"threshold {aggregate}, in order", events, timed(in_order))
    late = [(lambda n=n: windows.add(KEY, 49_999 - n * 50_000 // events, value, f"l{n}", 0))
            for n in range(events)]  # fmt: skip
    row(f"threshold {aggregate}, late", events, timed(late))


def sequence(events: int) -> None:
    step = Step(Match("category", "equals", ("x",)))
    windows = SequenceWindows(Sequence((step, step), 60_000, ()), lateness_ms=60_000)
    calls = [
        (lambda n=n: windows.add(0, KEY, n * 50_000 // events, f"e{n}", 0)) for n in range(events)
    ]
    row("sequence, first step flood", events, timed(calls))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--window-events", type=int, default=100_000)
    parser.add_argument("--value-kb", type=int, default=64)
    parser.add_argument("--no-python-re", action="store_true")
    args = parser.parse_args()
    print("| case | events | total s | median us/event | worst us/event |")
    print("|---|---|---|---|---|")
    redaction(args.value_kb * 1024, not args.no_python_re)
    for aggregate in ("count", "sum", "distinct"):
        threshold(aggregate, args.window_events)
    sequence(args.window_events)


if __name__ == "__main__":
    main()
