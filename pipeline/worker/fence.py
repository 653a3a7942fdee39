"""Fencing a zombie worker: no insert from a batch whose partitions were given away.

A worker frozen mid-batch (SIGSTOP, a VM paused, a GC pause, a long swap) past its
session timeout is removed from the consumer group, and another worker takes its
partitions over and stores their messages from the last commit. When the frozen one
resumes, its batch thread goes on with the insert it was about to make, and those
messages would be stored twice: the two workers' batches have different bounds, so
their insert tokens differ and ClickHouse keeps both (a test measured 200 of 100,000
events stored twice).

So, before each insert, the batch thread asks the group coordinator, through the
consumer's own thread, whether this member is still the one the batch began under (a
heartbeat: "unknown member" or "illegal generation" reset it). If the membership was
lost or changed since the batch began, the worker exits with status 75 instead of
inserting: nothing of the batch is committed, and the partitions' new owner stores it.
Only a confirmed heartbeat lets the insert go: no answer, or a failed request (the
coordinator marked dead, as a resumed worker's consumer does first), makes the insert
wait and ask again (``FenceUnsure``); it never counts as "still a member".

The check costs one heartbeat round trip per insert (about a millisecond on a local
broker). It is made once the insert's first block is encoded (``InsertService`` calls it
from ``outputs/clickhouse/fencing.send_insert``), so only socket writes follow the
answer. A freeze during those writes, when the insert's body is streamed, is handled on
the store's side: the worker that takes the partitions over cancels the frozen worker's
running insert before it reads what the store holds (``fencing.py``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust

from pipeline.worker.watchdog import exit_stalled

log = logging.getLogger("auditpipe.worker")

ASK_TIMEOUT_S = 5.0
"""How long the coordinator has to answer; then the insert waits and asks again."""


class FenceUnsure(Exception):
    """The coordinator did not confirm the membership (no answer in time, the
    coordinator unknown or moving): the insert is not made now but retried, with the
    sink's back-off, until it is confirmed or the worker is found fenced. A worker that
    just resumed from a freeze sees this while its consumer thread finds out that its
    session expired: inserting then was the hole through which rows were doubled."""


class Fence:
    def __init__(self, app: faust.App) -> None:
        self.app = app
        self.member: str | None = None
        """The group member id when the batch in progress began (None: not known)."""

    def _coordinator(self) -> tuple[Any, asyncio.AbstractEventLoop] | None:
        thread: Any = getattr(self.app.consumer, "_thread", None)
        if thread is None:
            return None
        consumer = thread._ensure_consumer()
        return consumer._coordinator, thread.thread_loop

    def begin(self) -> None:
        """At the start of a batch (on the event loop): remember who we are."""
        found = self._coordinator()
        self.member = found[0].member_id if found else None

    def check(self) -> None:
        """Before an insert (in the batch thread): exit if the membership the batch began
        under is gone."""
        found = self._coordinator()
        if found is None or not self.member:
            return
        coordinator, loop = found
        future = asyncio.run_coroutine_threadsafe(coordinator._do_heartbeat(), loop)
        try:
            confirmed = future.result(ASK_TIMEOUT_S)
        except Exception as exc:  # a timeout, a broker down, an error of the request
            future.cancel()
            raise FenceUnsure(
                f"the group coordinator did not answer ({type(exc).__name__}); "
                "the insert waits until this worker's membership is confirmed"
            ) from None
        if coordinator.member_id != self.member:
            exit_stalled(
                f"fenced: this worker left the consumer group while a batch was in progress "
                f"(member {self.member} is gone); not inserting it, its partitions' new "
                "owner stores it",
                self.app.loop,
            )
        if not confirmed:
            raise FenceUnsure(
                "the group coordinator did not confirm this worker's membership; "
                "the insert waits until it does"
            )
