"""What every command shares: the exit statuses README promises, and the errors that
``pipeline.cli.main`` turns into them (one line on stderr, never a traceback).

0 success; 1 done, but some input was rejected or a check found something; 2 bad usage
or configuration; 3 a service is unavailable (or a check could not be made).
"""

from __future__ import annotations

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3


class UsageError(Exception):
    """Words on the command line that cannot be used: exit status 2, one line."""


class CannotCheck(Exception):
    """A check could not be done (not a finding): exit status 3, one line."""


def since_ms(text: str | None) -> int | None:
    """A ``--since`` value (epoch ms or RFC 3339) as epoch ms; None when not given."""
    from pipeline.schema.event import InvalidEvent, parse_ts

    if text is None:
        return None
    try:
        return parse_ts(int(text) if text.isdigit() else text)
    except InvalidEvent as exc:
        raise UsageError(f"--since: {exc.problem}") from None
