"""What every SIEM destination's output does alike: shape by format, retry a delivery
that may succeed later until it does or the forwarder stops, count the retries.

Invariant: ``write`` returns only once the batch is delivered (by the destination's
own definition, in its ``service.py``), so the forwarder commits the alerts' offsets only
after that; nothing is kept between writes, and ``flush`` has nothing to do."""

from __future__ import annotations

import threading
from collections.abc import Callable

from pipeline.config import ForwardDestination
from pipeline.outputs.base import Kind, Records
from pipeline.outputs.forwarding.retry import retrying
from pipeline.outputs.forwarding.shapes import shape_for


class ForwardingOutput:
    kinds: frozenset[Kind] = frozenset({"forwarded"})

    def __init__(self, dest: ForwardDestination, stopping: threading.Event) -> None:
        self.name = dest.name
        self.dest = dest
        self.stopping = stopping
        self.shape = shape_for(dest.format)
        self.retries = 0
        """Retried delivery attempts (``auditpipe_forward_retries_total``)."""

    def deliver(self, send: Callable[[], object], what: str) -> None:
        """Calls ``send`` until it succeeds; ``Refused`` and ``Stopped`` go to the caller."""

        def retried() -> None:
            self.retries += 1

        retrying(
            send,
            f"{self.name}: {what}",
            initial_s=self.dest.retry_initial_s,
            max_s=self.dest.retry_max_s,
            stopping=self.stopping,
            on_retry=retried,
        )

    def write(self, records: Records) -> None:
        """Delivers ``records`` (through ``deliver``) before it returns."""
        raise NotImplementedError

    def flush(self) -> None:
        """Nothing is kept: every write is delivered before it returns."""

    def close(self) -> None:
        raise NotImplementedError
