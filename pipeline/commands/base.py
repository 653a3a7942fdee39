"""What every command shares: the exit statuses README promises, and the errors that
``pipeline.cli.main`` turns into them (one line on stderr, never a traceback).

0 success; 1 done, but some input was rejected or a check found something; 2 bad usage
or configuration; 3 a service is unavailable (or a check could not be made).
"""

from __future__ import annotations

import re
import time

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3


class UsageError(Exception):
    """Words on the command line that cannot be used: exit status 2, one line."""


class CannotCheck(Exception):
    """A check could not be done (not a finding): exit status 3, one line."""


_AGO = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_AGO_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def since_ms(text: str | None) -> int | None:
    """A ``--since`` value (epoch ms, RFC 3339, or a time ago: ``30d``, ``12h``, ``90m``,
    ``2w``) as epoch ms; None when not given."""
    from pipeline.schema.event import InvalidEvent, parse_ts

    if text is None:
        return None
    ago = _AGO.fullmatch(text.strip())
    if ago:
        return int(time.time() * 1000 - float(ago.group(1)) * _AGO_MS[ago.group(2)])
    try:
        return parse_ts(int(text) if text.isdigit() else text)
    except InvalidEvent as exc:
        raise UsageError(f"--since: {exc.problem}") from None


def time_range(since: str, until: str | None) -> tuple[int, int]:
    """``--since`` and ``--until`` (default: now) as epoch ms, the end after the start."""
    start = since_ms(since)
    try:
        end = since_ms(until) if until else int(time.time() * 1000)
    except UsageError as exc:
        raise UsageError(str(exc).replace("--since", "--until", 1)) from None
    assert start is not None and end is not None
    if end <= start:
        raise UsageError("--until must be after --since")
    return start, end
