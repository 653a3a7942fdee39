"""The worker's health for orchestrators, on ``worker.web_port`` next to ``/metrics``.

- ``/healthz`` (liveness): 200 while the event loop answers (it serves this page), the
  stall watchdog's checks keep completing, and the consumer has not stalled; 503
  otherwise, so that a supervisor restarts the worker (it resumes where the stored rows
  end). Nothing outside the worker (Kafka, ClickHouse) makes it fail: restarting a
  worker does not bring a broker back.
- ``/readyz`` (readiness): 200 once the worker holds partitions of the events topic and
  ClickHouse answers a ping; 503 while it starts, rebalances, stops, or ClickHouse does
  not answer. A worker of a group with more workers than partitions holds none and is
  not ready: it is a standby.

Each answers with a JSON body that says why. The ClickHouse ping runs in a thread of its
own, at most once per ``PING_EVERY_S`` (a prober that calls every second does not become
a load), with a timeout.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import faust

from pipeline.worker.watchdog import StallWatchdog

CHECK_STALE_S = 30.0
"""The watchdog checks every 5 s; none for this long and the loop or its timers hang."""
PING_EVERY_S = 5.0
PING_TIMEOUT_S = 3.0


class Health:
    def __init__(
        self,
        app: faust.App,
        topic: str,
        watchdog: StallWatchdog,
        stopping: threading.Event,
        ping: Callable[[], bool],
    ) -> None:
        self.app = app
        self.topic = topic
        self.watchdog = watchdog
        self.stopping = stopping
        self.ping = ping
        """Whether ClickHouse answers (blocking; run in a thread)."""
        self._pinged_at = -PING_EVERY_S
        self._answered = False

    def live(self) -> tuple[bool, dict[str, Any]]:
        now = time.monotonic()
        since_check = now - self.watchdog.checked_at
        since_batch = now - self.watchdog.last_batch_at
        stall = self.watchdog.stall_s
        stalled = bool(stall) and self.watchdog.kicked and since_batch >= stall
        ok = since_check < CHECK_STALE_S and not stalled
        return ok, {
            "status": "ok" if ok else "unhealthy",
            "seconds_since_watchdog_check": round(since_check, 1),
            "seconds_since_last_batch": round(since_batch, 1),
            "stalled": stalled,
        }

    async def ready(self) -> tuple[bool, dict[str, Any]]:
        consumer: Any = self.app.consumer
        partitions = sorted(tp.partition for tp in consumer.assignment() if tp.topic == self.topic)
        clickhouse = await self._clickhouse_answers()
        stopping = self.stopping.is_set()
        rebalancing = bool(self.app.rebalancing)
        ok = bool(partitions) and clickhouse and not stopping and not rebalancing
        return ok, {
            "status": "ready" if ok else "not ready",
            "partitions": partitions,
            "clickhouse": clickhouse,
            "rebalancing": rebalancing,
            "stopping": stopping,
        }

    async def _clickhouse_answers(self) -> bool:
        now = time.monotonic()
        if now - self._pinged_at >= PING_EVERY_S:
            self._pinged_at = now
            try:
                self._answered = await asyncio.wait_for(
                    asyncio.to_thread(self.ping), PING_TIMEOUT_S
                )
            except Exception:
                self._answered = False
        return self._answered

    def serve(self) -> None:
        """Add the two pages to the app's web server."""

        @self.app.page("/healthz")
        async def healthz(web: Any, request: Any) -> Any:
            ok, body = self.live()
            return web.json(body, status=200 if ok else 503)

        @self.app.page("/readyz")
        async def readyz(web: Any, request: Any) -> Any:
            ok, body = await self.ready()
            return web.json(body, status=200 if ok else 503)
