"""Process-wide tuning for auditpipe's long-running commands.

The worker, ``publish`` and the collector hold many small dicts at once (decoded events
live until the sink takes them). They have no reference cycles and are freed by
reference counting, but CPython's default collector thresholds (700, 10, 10) still run
full collections that walk every live one. With 128,000 decoded events alive, decode and
the stream stages cost 17.3 µs per event with the defaults and 13.1 with these
(`python benchmarks/stages.py --gc default|tuned`, benchmarks/RESULTS.md).
"""

from __future__ import annotations

import gc

GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    """Collect young objects less often, and leave what startup created out of the
    collector's walks (``gc.freeze``). Cycles are still collected."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
