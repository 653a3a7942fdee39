"""How a SIEM delivery fails, and the retry loop.

``Unavailable``: the destination may take the records later (connection refused or
reset, a timeout, HTTP 429 and 5xx, HEC's 503 "server busy", an indexer that has not
acknowledged): ``retrying`` waits and sends again, forever, with back-off and jitter,
so the forwarder holds its place in the topic (backpressure) and loses nothing; it is
counted as a retry, never as dropped. ``Refused``: the destination will never take
these records as they are (HTTP 4xx other than 408 and 429, a payload too large): the
forwarder splits the batch to find the records at fault and dead-letters them with
the reason.

A destination's credentials being refused (HTTP 401, 403) is ``Unavailable``: an
operator fixes the token, and dead-lettering every alert for a configuration mistake
would empty the stream into the dead letters. It is logged at error level every time.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger("auditpipe.forward")

T = TypeVar("T")


class Unavailable(Exception):
    """The destination may take the records later."""


class Refused(Exception):
    """The destination will never take these records as they are."""


class Stopped(Exception):
    """The forwarder stopped while a delivery was being retried (not delivered)."""


def retrying(
    call: Callable[[], T],
    what: str,
    *,
    initial_s: float,
    max_s: float,
    stopping: threading.Event,
    on_retry: Callable[[], None] = lambda: None,
) -> T:
    """``call()`` until it returns or raises ``Refused``; ``Unavailable`` and OS errors
    are retried after ``initial_s`` doubling to ``max_s``, each wait with full jitter
    in its upper half (many forwarders restarting together do not retry in step)."""
    delay = initial_s
    attempt = 0
    while True:
        try:
            return call()
        except (Unavailable, OSError) as exc:
            attempt += 1
            on_retry()
            level = logging.ERROR if attempt == 1 or attempt % 10 == 0 else logging.WARNING
            log.log(level, "%s failed (%s); retry %d in %.1f s", what, exc, attempt, delay)
            if stopping.wait(delay * random.uniform(0.5, 1.0)):
                raise Stopped(what) from None
            delay = min(delay * 2, max_s)


def sleep_unless_stopped(stopping: threading.Event, seconds: float) -> None:
    if stopping.wait(seconds):
        raise Stopped("stopping")
