"""Records to topics: alerts (to ``audit.alerts`` and the severity routes), dead
letters (``audit.deadletter``, Avro) and the second copy of the signed checkpoints
(``audit.checkpoints``, JSON). Each sends a batch's records and waits until Kafka has
taken all of them (the batch is not acknowledged before)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import orjson

from pipeline.chain.hashing import chain_key
from pipeline.config import Settings
from pipeline.rules.alerts import Alert
from pipeline.schema.codec import AvroCodec

DEADLETTER_SCHEMA = "dead_letter"
ALERT_SCHEMA = "alert"


async def _sent(futures: list[Any]) -> None:
    if futures:
        await asyncio.gather(*futures)


def alert_publisher(
    topic_of: Callable[[str], Any], settings: Settings, codec: AvroCodec
) -> Callable[[list[Alert]], Coroutine[Any, Any, None]]:
    """A coroutine function that sends alerts to the alerts topic and, by severity, to
    its routes (``rules.routes``); ``topic_of(name)`` gives a topic to send to."""
    main = topic_of(settings.kafka.topic_alerts)
    routes = {severity: topic_of(name) for severity, name in settings.rules.routes.items()}
    as_json = settings.rules.alert_format == "json"

    async def publish(alerts: list[Alert]) -> None:
        futures = []
        for alert in alerts:
            record = alert.record()
            value = orjson.dumps(record) if as_json else codec.encode(ALERT_SCHEMA, record)
            futures.append(await main.send(key=alert.key, value=value))
            route = routes.get(alert.severity)  # type: ignore[call-overload]
            if route is not None:
                futures.append(await route.send(key=alert.key, value=value))
        await _sent(futures)

    return publish


async def publish_dead_letters(topic: Any, codec: AvroCodec, records: list[dict[str, Any]]) -> None:
    await _sent(
        [
            await topic.send(key=record["key"], value=codec.encode(DEADLETTER_SCHEMA, record))
            for record in records
        ]
    )


async def publish_checkpoints(topic: Any, records: list[dict[str, Any]]) -> None:
    """Keyed by chain (tenant and sandbox), so a sandbox's checkpoints stay in order."""
    await _sent(
        [
            await topic.send(
                key=chain_key(record["tenant"], record["sandbox_id"]).encode(),
                value=orjson.dumps(record),
            )
            for record in records
        ]
    )


ORIGIN_HEADER = "auditpipe-origin"
"""On a deferred message: ``partition:offset:timestamp_ms`` of the message it copies."""


async def publish_deferred(topic: Any, messages: list[Any]) -> None:
    """Messages (``stages.decode.RawMessage``) as they arrived, to the same partition of
    the deferred topic with the same key, in order (``stages/fairness.py``)."""
    await _sent(
        [
            await topic.send(
                key=m.key,
                value=m.value,
                partition=m.partition,
                headers=[(ORIGIN_HEADER, f"{m.partition}:{m.offset}:{m.timestamp_ms}".encode())],
            )
            for m in messages
        ]
    )
