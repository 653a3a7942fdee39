"""Wiring: one ``DestinationLoop`` per destination, the metrics endpoint, the signals."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading

from prometheus_client import start_http_server

from pipeline.config import ConfigError, Settings
from pipeline.forward.metrics import ForwardMetrics
from pipeline.forward.runner import DestinationLoop
from pipeline.schema import codec_for

log = logging.getLogger("auditpipe.forward")


async def forward(
    settings: Settings, names: list[str] | None = None, idle_timeout_s: float = 0.0
) -> dict[str, int]:
    """Run the destinations (all, or those named) until SIGTERM/SIGINT or, with
    ``idle_timeout_s``, until each has been quiet that long; alerts delivered by each."""
    chosen = [d for d in settings.forward.destinations if not names or d.name in names]
    unknown = set(names or ()) - {d.name for d in chosen}
    if unknown:
        raise ConfigError(f"forward: no destination named {', '.join(sorted(unknown))}")
    if not chosen:
        raise ConfigError("forward: no destinations configured (forward.destinations)")
    stopping = threading.Event()
    metrics = ForwardMetrics()
    if settings.forward.metrics_port:
        start_http_server(settings.forward.metrics_port, registry=metrics.registry)
    codec = codec_for(settings.kafka.schema_registry_url, stopping)
    loops = [DestinationLoop(settings, dest, codec, metrics, stopping) for dest in chosen]
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    log.info("forwarding %s to %s", settings.kafka.topic_alerts, ", ".join(d.name for d in chosen))
    try:
        counts = await asyncio.gather(*(one.run(idle_timeout_s) for one in loops))
    finally:
        stopping.set()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    return {dest.name: count for dest, count in zip(chosen, counts, strict=True)}
